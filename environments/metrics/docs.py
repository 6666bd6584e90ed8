"""Writer document metrics (OSWorld `metrics/docs.py`): .docx through python-docx, .odt through odfpy,
LibreOffice's registry for the default font."""

from __future__ import annotations

import re
from typing import Any

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def _document(path: str):
    from docx import Document

    return Document(path)


def _documents(*paths: str | None) -> list | None:
    """The opened documents, or None when a path is empty or a file does not open (OSWorld scores 0)."""
    if not all(paths):
        return None
    try:
        return [_document(p) for p in paths]
    except Exception:
        return None


def find_default_font(config_file: str | None, rules: dict) -> float:
    """Writer's default font (registrymodifications.xcu, DefaultFont/Standard) is `rules["font_name"]`."""
    import xml.etree.ElementTree as ET

    if not config_file:
        return 0.0
    font = None
    ns = {"oor": "http://openoffice.org/2001/registry"}
    try:
        root = ET.parse(config_file).getroot()
        for item in root.findall('.//item[@oor:path="/org.openoffice.Office.Writer/DefaultFont"]', ns):
            for prop in item.findall('.//prop[@oor:name="Standard"]', ns):
                for value in prop.findall("value", ns):
                    font = value.text
    except Exception:
        pass
    return float(font == rules["font_name"])


def contains_page_break(docx_file: str | None, rules: dict) -> float:
    """Some run holds a page break (`<w:br w:type="page">`), as many as `page_break_count` if given."""
    docs = _documents(docx_file)
    if docs is None:
        return 0.0
    try:
        want = rules["page_break_count"]
    except Exception:
        want = None
    count = sum(1 for p in docs[0].paragraphs for run in p.runs
                for br in run.element.findall(".//w:br", {"w": W_NS}) if br.attrib.get(f"{{{W_NS}}}type") == "page")
    if want is not None and count != want:
        return 0.0
    return float(count > 0)


def _odt_paragraphs(document) -> list[str]:
    """Each <text:p>'s own text plus the text directly inside its <text:span> children."""
    from odf.text import P

    texts = []
    for paragraph in document.getElementsByType(P):
        parts = []
        for node in paragraph.childNodes:
            if node.nodeType == node.TEXT_NODE:
                parts.append(node.data)
            elif node.nodeType == node.ELEMENT_NODE and node.tagName == "text:span":
                parts.extend(child.data for child in node.childNodes if child.nodeType == child.TEXT_NODE)
        texts.append("".join(parts))
    return texts


def _fuzz(a: str, b: str) -> float:
    from rapidfuzz import fuzz

    return fuzz.ratio(a, b) / 100.0


def compare_docx_files(file1: str | None, file2: str | None, **options: Any) -> float:
    """Two .docx (or two .odt) by paragraph text.

    `content_only`: fuzz ratio of the whitespace-collapsed texts. `ignore_blanks` (default): collapsed
    texts equal (or their fuzz ratio with `fuzzy_match`). Otherwise the same number of paragraphs,
    each equal (or the mean fuzz ratio). `ignore_order` sorts paragraphs, `delete_empty_lines` drops
    blank ones, `ignore_case` folds case. Other file types, or files that do not open, score 0.
    """
    ignore_blanks = options.get("ignore_blanks", True)
    ignore_case = options.get("ignore_case", False)
    ignore_order = options.get("ignore_order", False)
    content_only = options.get("content_only", False)
    fuzzy = options.get("fuzzy_match", False)
    delete_empty_lines = options.get("delete_empty_lines", False)
    if not file1 or not file2:
        return 0.0
    if file1.endswith(".docx") and file2.endswith(".docx"):
        docs = _documents(file1, file2)
        if docs is None:
            return 0.0
        paras1, paras2 = ([p.text for p in d.paragraphs] for d in docs)
    elif file1.endswith(".odt") and file2.endswith(".odt"):
        from odf.opendocument import load

        try:
            odt1, odt2 = load(file1), load(file2)
        except Exception:
            return 0.0
        paras1, paras2 = _odt_paragraphs(odt1), _odt_paragraphs(odt2)
    else:
        return 0.0
    if ignore_order:
        paras1, paras2 = sorted(paras1), sorted(paras2)
    if delete_empty_lines:
        paras1, paras2 = [p for p in paras1 if p.strip()], [p for p in paras2 if p.strip()]

    def collapsed(paras: list[str]) -> str:
        text = re.sub(r"\s+", " ", "\n".join(paras)).strip()
        return text.lower() if ignore_case else text

    if content_only:
        return _fuzz(collapsed(paras1), collapsed(paras2))
    if ignore_blanks:
        text1, text2 = collapsed(paras1), collapsed(paras2)
        if fuzzy:
            return _fuzz(text1, text2)
        return float(text1 == text2)
    if len(paras1) != len(paras2):
        return 0.0
    fold = (lambda s: s.lower()) if ignore_case else (lambda s: s)
    if fuzzy:
        if not paras1:
            return 1.0
        return sum(_fuzz(fold(a), fold(b)) for a, b in zip(paras1, paras2)) / len(paras1)
    return float(all(fold(a) == fold(b) for a, b in zip(paras1, paras2)))


def compare_docx_tables(docx1: str | None, docx2: str | None) -> float:
    """Same number of tables, each with the same shape and the same stripped cell texts."""
    docs = _documents(docx1, docx2)
    if docs is None:
        return 0.0
    tables1, tables2 = docs[0].tables, docs[1].tables
    if len(tables1) != len(tables2):
        return 0.0
    for t1, t2 in zip(tables1, tables2):
        if len(t1.rows) != len(t2.rows) or len(t1.columns) != len(t2.columns):
            return 0.0
        for i in range(len(t1.rows)):
            for j in range(len(t1.columns)):
                if t1.cell(i, j).text.strip() != t2.cell(i, j).text.strip():
                    return 0.0
    return 1.0


def compare_docx_images(docx1: str | None, docx2: str | None) -> float:
    """The documents' images (by relationship order) decode to the same pixels."""
    import io

    from PIL import Image

    docs = _documents(docx1, docx2)
    if docs is None:
        return 0.0

    def images(doc) -> list[bytes]:
        return [rel.target_part.blob for rel in doc.part.rels.values() if "image" in rel.reltype]

    a, b = images(docs[0]), images(docs[1])
    if len(a) != len(b):
        return 0.0
    return float(all(Image.open(io.BytesIO(x)).tobytes() == Image.open(io.BytesIO(y)).tobytes()
                     for x, y in zip(a, b)))


def compare_line_spacing(docx1: str | None, docx2: str | None) -> float:
    """Same text (compare_docx_files) and the same line spacing paragraph by paragraph."""
    if not docx1 or not docx2:
        return 0.0
    if not compare_docx_files(docx1, docx2):
        return 0.0
    docs = _documents(docx1, docx2)
    if docs is None:
        return 0.0
    p1, p2 = docs[0].paragraphs, docs[1].paragraphs
    if len(p1) != len(p2):
        return 0.0
    return float(all(a.paragraph_format.line_spacing == b.paragraph_format.line_spacing for a, b in zip(p1, p2)))


def compare_font_names(docx_file: str | None, rules: dict) -> float:
    """Every run of every paragraph names `rules["font_name"]` (run.font.name; the font need not exist)."""
    docs = _documents(docx_file)
    if docs is None:
        return 0.0
    want = rules["font_name"]
    return float(all(run.font.name == want for p in docs[0].paragraphs for run in p.runs))


def compare_subscript_contains(docx1: str | None, docx2: str | None) -> float:
    """Some pair of runs (same paragraph, same position) are both subscript."""
    docs = _documents(docx1, docx2)
    if docs is None:
        return 0.0
    return float(any(r1.font.subscript and r2.font.subscript for p1, p2 in zip(docs[0].paragraphs, docs[1].paragraphs)
                     for r1, r2 in zip(p1.runs, p2.runs)))


def has_page_numbers_in_footers(docx_file: str | None) -> float:
    """Every section's footer has a digit in its first paragraph."""
    docs = _documents(docx_file)
    if docs is None:
        return 0.0
    for section in docs[0].sections:
        footer = section.footer
        if footer is None:
            return 0.0
        text = footer.paragraphs[0].text if footer.paragraphs else ""
        if not any(c.isdigit() for c in text):
            return 0.0
    return 1.0


def is_first_line_centered(docx_file: str | None) -> float:
    """The first paragraph is centred; a document without paragraphs scores 0 (OSWorld: raises)."""
    from docx.enum.text import WD_PARAGRAPH_ALIGNMENT

    docs = _documents(docx_file)
    if docs is None or not docs[0].paragraphs:
        return 0.0
    return float(docs[0].paragraphs[0].paragraph_format.alignment == WD_PARAGRAPH_ALIGNMENT.CENTER)


def check_tabstops(docx1: str | None, docx2: str | None, **options: Any) -> float:
    """Non-blank paragraphs pair up with the same tab stops (alignment), scored 1 minus the mean
    position error relative to the text width; `word_number_split_by_tabstop` = n also needs n words
    before tab number `index` in every result paragraph."""
    from docx.enum.text import WD_TAB_ALIGNMENT

    docs = _documents(docx1, docx2)
    if docs is None:
        return 0.0
    para1 = [p for p in docs[0].paragraphs if p.text.strip()]
    para2 = [p for p in docs[1].paragraphs if p.text.strip()]
    if len(para1) != len(para2):
        return 0.0
    if options.get("word_number_split_by_tabstop", None) is not None:
        number = options["word_number_split_by_tabstop"]
        index = options.get("index", 0)
        for p in para1:
            words = [w for w in re.split(r"\s", p.text.split("\t")[index]) if w.strip()]
            if len(words) != number:
                return 0.0
    section = docs[1].sections[0]
    width = section.page_width - section.left_margin - section.right_margin

    def kept(stop) -> bool:
        return not (stop.alignment == WD_TAB_ALIGNMENT.CLEAR
                    or (stop.alignment == WD_TAB_ALIGNMENT.LEFT and stop.position == 0))

    minus = 0.0
    for p1, p2 in zip(para1, para2):
        tabs1 = [t for t in p1.paragraph_format.tab_stops if kept(t)]
        tabs2 = [t for t in p2.paragraph_format.tab_stops if kept(t)]
        if len(tabs1) != len(tabs2):
            return 0.0
        difference = 0.0
        for t1, t2 in zip(tabs1, tabs2):
            if t1.alignment != t2.alignment:
                return 0.0
            difference += abs(t1.position - t2.position)
        minus += difference / width
    return 1 - minus / len(para1)


def compare_contains_image(docx1: str | None, docx2: str | None) -> float:
    """Runs at the same places either both hold a drawing (graphicData) or neither does."""
    docs = _documents(docx1, docx2)
    if docs is None:
        return 0.0
    for p1, p2 in zip(docs[0].paragraphs, docs[1].paragraphs):
        for r1, r2 in zip(p1.runs, p2.runs):
            if ("graphicData" in r1._element.xml) != ("graphicData" in r2._element.xml):
                return 0.0
    return 1.0


def evaluate_colored_words_in_tables(file1: str | None, file2: str | None, **options: Any) -> float:
    """Same text, and in the result's tables words starting with a vowel are red and the others blue
    (CIEDE2000 distance ≤ `threshold`, default 3.5)."""
    from docx.shared import RGBColor
    from skimage.color import deltaE_ciede2000, rgb2lab

    if not file1 or not file2:
        return 0.0
    if not compare_docx_files(file1, file2):
        return 0.0
    docs = _documents(file1)
    if docs is None:
        return 0.0
    threshold = options.get("threshold", 3.5)

    def distance(rgb1, rgb2) -> float:
        lab1 = rgb2lab([rgb1[0] / 255.0, rgb1[1] / 255.0, rgb1[2] / 255.0])
        lab2 = rgb2lab([rgb2[0] / 255.0, rgb2[1] / 255.0, rgb2[2] / 255.0])
        return deltaE_ciede2000(lab1, lab2)

    for table in docs[0].tables:
        for row in table.rows:
            for cell in row.cells:
                for paragraph in cell.paragraphs:
                    for run in paragraph.runs:
                        word = run.text
                        if not word:
                            continue
                        target = RGBColor(255, 0, 0) if word[0].lower() in "aeiou" else RGBColor(0, 0, 255)
                        if distance(run.font.color.rgb, target) > threshold:
                            return 0.0
    return 1.0


def check_highlighted_words(file1: str | None, file2: str | None) -> float:
    """Same text, and no span of the (.odt) result uses an automatic style with a yellow (#ffff00)
    background. A result odfpy cannot open scores 0 (OSWorld: raises)."""
    from odf.opendocument import load
    from odf.text import Span

    if not file1 or not file2:
        return 0.0
    if not compare_docx_files(file1, file2):
        return 0.0
    try:
        doc = load(file1)
    except Exception:
        return 0.0
    for span in doc.getElementsByType(Span):
        style_name = span.getAttribute("stylename")
        if not style_name:
            continue
        for style in doc.automaticstyles.childNodes:
            if style.getAttribute("name") == style_name:
                if any(prop.getAttribute("backgroundcolor") == "#ffff00" for prop in style.childNodes):
                    return 0.0
    return 1.0


def evaluate_strike_through_last_paragraph(file1: str | None, file2: str | None) -> float:
    """Same text, and every run of the result's last paragraph is struck through."""
    if not file1 or not file2:
        return 0.0
    if not compare_docx_files(file1, file2):
        return 0.0
    docs = _documents(file1)
    if docs is None or not docs[0].paragraphs:
        return 0.0
    return float(all(run.font.strike for run in docs[0].paragraphs[-1].runs))


def check_italic_font_size_14(path1: str | None, path2: str | None) -> float:
    """Same text, and every italic run is 14 pt."""
    if not path1 or not path2:
        return 0.0
    if not compare_docx_files(path1, path2):
        return 0.0
    docs = _documents(path1)
    if docs is None:
        return 0.0
    for p in docs[0].paragraphs:
        for run in p.runs:
            if run.italic and (run.font.size is None or run.font.size.pt != 14):
                return 0.0
    return 1.0


def compare_docx_lines(file1: str | None, file2: str | None) -> float:
    """The same set of stripped non-blank paragraphs."""
    docs = _documents(file1, file2)
    if docs is None:
        return 0.0
    a, b = ({p.text.strip() for p in d.paragraphs if p.text.strip()} for d in docs)
    return float(a == b)


def compare_docx_files_and_ignore_new_lines(file1: str | None, file2: str | None, **options: Any) -> float:
    """Two .docx with empty paragraphs dropped: whitespace-collapsed texts equal (`ignore_blanks`,
    default), else the same paragraphs."""
    if not file1 or not file2:
        return 0.0
    if not (file1.endswith(".docx") and file2.endswith(".docx")):
        return 0.0
    docs = _documents(file1, file2)
    if docs is None:
        return 0.0
    paras1, paras2 = ([p.text for p in d.paragraphs if p.text != ""] for d in docs)
    if options.get("ignore_blanks", True):
        return float(re.sub(r"\s+", " ", "\n".join(paras1)).strip() == re.sub(r"\s+", " ", "\n".join(paras2)).strip())
    return float(paras1 == paras2)


def compare_references(file1: str | None, file2: str | None, **options: Any) -> float:
    """Paragraphs after the `reference_indicator` paragraph ("References"), non-blank, pair up; their
    mean fuzz ratio r scores (r - b) / (1 - b) when r ≥ b + 0.01 (b = `reference_base_result`, 0.5)."""
    if not file1 or not file2:
        return 0.0
    indicator = options.get("reference_indicator", "References")
    base = options.get("reference_base_result", 0.5)
    if not (file1.endswith(".docx") and file2.endswith(".docx")):
        return 0.0
    docs = _documents(file1, file2)
    if docs is None:
        return 0.0
    paras1, paras2 = ([p.text for p in d.paragraphs] for d in docs)
    i1 = paras1.index(indicator) if indicator in paras1 else -1
    i2 = paras2.index(indicator) if indicator in paras2 else -1
    if i1 == -1 and i2 == -1:
        return 1.0
    if i1 == -1 or i2 == -1:
        return 0.0
    ref1 = [p for p in paras1[i1 + 1:] if p.strip()]
    ref2 = [p for p in paras2[i2 + 1:] if p.strip()]
    if len(ref1) != len(ref2):
        return 0.0
    if not ref1:  # OSWorld divides by zero here
        raise ZeroDivisionError("no references after the indicator in either document")
    result = sum(_fuzz(a, b) for a, b in zip(ref1, ref2)) / len(ref1)
    if result >= base + 0.01:
        return (result - base) / (1 - base)
    return 0.0


METRICS = {f.__name__: f for f in (
    find_default_font, contains_page_break, compare_docx_files, compare_docx_tables, compare_docx_images,
    compare_line_spacing, compare_font_names, compare_subscript_contains,
    has_page_numbers_in_footers, is_first_line_centered, check_tabstops, compare_contains_image,
    evaluate_colored_words_in_tables, check_highlighted_words, evaluate_strike_through_last_paragraph,
    check_italic_font_size_14, compare_docx_lines, compare_docx_files_and_ignore_new_lines, compare_references)}
