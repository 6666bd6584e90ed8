"""Cases for OSWorld's docs.py metrics: .docx written with python-docx, .odt with odfpy."""

from __future__ import annotations

import itertools


def docx(c, paragraphs: list, name: str = "d.docx", tables: list = (), section=None, footer: str | None = None,
         image: str | None = None) -> str:
    """paragraphs: str, or (text, {run options}), or a list of such runs as one paragraph."""
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_BREAK
    from docx.shared import Pt, RGBColor

    doc = Document()
    for para in paragraphs:
        runs = para if isinstance(para, list) else [para]
        p = doc.add_paragraph()
        for run in runs:
            text, opts = (run, {}) if isinstance(run, str) else run
            r = p.add_run(text)
            if opts.get("font"):
                r.font.name = opts["font"]
            r.bold, r.italic = opts.get("bold"), opts.get("italic")
            if opts.get("size"):
                r.font.size = Pt(opts["size"])
            if opts.get("color"):
                r.font.color.rgb = RGBColor(*opts["color"])
            r.font.strike = opts.get("strike")
            r.font.subscript = opts.get("subscript")
            if opts.get("page_break"):
                r.add_break(WD_BREAK.PAGE)
            if opts.get("center"):
                p.alignment = WD_ALIGN_PARAGRAPH.CENTER
            if opts.get("spacing"):
                p.paragraph_format.line_spacing = opts["spacing"]
            for position in opts.get("tabs", []):
                p.paragraph_format.tab_stops.add_tab_stop(position)
    for rows in tables:
        table = doc.add_table(rows=len(rows), cols=len(rows[0]))
        for i, row in enumerate(rows):
            for j, cell in enumerate(row):
                text, color = cell if isinstance(cell, tuple) else (cell, None)
                run = table.cell(i, j).paragraphs[0].add_run(text)
                if color:
                    run.font.color.rgb = RGBColor(*color)
    if footer is not None:
        doc.sections[0].footer.paragraphs[0].text = footer
    if image is not None:
        doc.add_picture(image)
    path = c.path(name)
    doc.save(path)
    return path


def odt(c, paragraphs: list[tuple[str, bool]]) -> str:
    """(text, highlighted) paragraphs; a highlighted one is a span with a yellow background style."""
    from odf.opendocument import OpenDocumentText
    from odf.style import Style, TextProperties
    from odf.text import P, Span

    doc = OpenDocumentText()
    yellow = Style(name="Yellow", family="text")
    yellow.addElement(TextProperties(backgroundcolor="#ffff00"))
    doc.automaticstyles.addElement(yellow)
    for text, highlighted in paragraphs:
        p = P()
        if highlighted:
            p.addElement(Span(stylename=yellow, text=text))
        else:
            p.addText(text)
        doc.text.addElement(p)
    path = c.path("d.odt")
    doc.save(path)
    return path


def add_cases(c) -> None:
    from osworld_differential.corpus.media import png

    texts = [["Hello world", "Second para"], ["Hello world", "Second para"], ["hello   world", "second para"],
             ["Second para", "Hello world"], ["Hello world", "", "Second para"], ["Hello world"], [],
             ["Ünïcödé ✓", "References", "Ref one, 2020", "Ref two"], ["Ünïcödé ✓", "References", "Ref one 2020", "Ref 2"]]
    plain = [docx(c, t) for t in texts]
    results = [("value", p) for p in plain] + [("missing", c.missing), ("none", None),
                                               ("corrupt", c.text("d.docx", "not a docx"))]
    options = [{}, {"ignore_blanks": False}, {"ignore_case": True}, {"ignore_order": True, "ignore_blanks": False},
               {"content_only": True}, {"fuzzy_match": True}, {"ignore_blanks": False, "fuzzy_match": True},
               {"delete_empty_lines": True, "ignore_blanks": False}, *c.task_options("compare_docx_files")]
    c.cross("compare_docx_files", results, plain[:4] + [plain[6]], options=options)
    odts = [odt(c, [("Hello world", False), ("Second para", False)]), odt(c, [("Hello world", True), ("Second para", False)]),
            odt(c, [("Other", False)])]
    c.cross("compare_docx_files", [("value", p) for p in odts], odts + [plain[0]])
    c.cross("check_highlighted_words", [("value", p) for p in odts] + [("none", None), ("value", plain[0])], odts[:2])
    c.cross("compare_docx_files_and_ignore_new_lines", results, plain[:5], options=[{}, {"ignore_blanks": False}])
    c.cross("compare_docx_lines", results, plain[:5])
    c.cross("compare_references", results, plain[7:9] + [plain[0]],
            options=[{}, {"reference_base_result": 0.2}, {"content_only": True, "reference_base_result": 0.4}])

    tabled = [docx(c, ["x"], tables=[[["a", "b"], ["c", "d"]]]), docx(c, ["x"], tables=[[["a", "b"], ["c", "d"]]]),
              docx(c, ["x"], tables=[[["a", "b"], ["c", " d "]]]), docx(c, ["x"], tables=[[["a", "b"]]]),
              docx(c, ["x"])]
    c.cross("compare_docx_tables", [("value", p) for p in tabled] + results[-3:], tabled)

    fonts = [docx(c, [[("a", {"font": "Times New Roman"}), ("b", {"font": "Times New Roman"})]]),
             docx(c, [[("a", {"font": "Times New Roman"}), ("b", {"font": "Arial"})]]), plain[0], plain[6]]
    c.cross("compare_font_names", [("value", p) for p in fonts] + results[-3:],
            [{"font_name": "Times New Roman"}, {"font_name": "Arial"}, *c.task_rules("compare_font_names")])

    spaced = [docx(c, [("Hello world", {"spacing": 2.0}), "Second para"]),
              docx(c, [("Hello world", {"spacing": 1.5}), "Second para"]), plain[0]]
    c.cross("compare_line_spacing", [("value", p) for p in spaced] + results[-3:], spaced)
    subs = [docx(c, [[("H", {}), ("2", {"subscript": True}), ("O", {})]]), docx(c, [[("H", {}), ("2", {}), ("O", {})]])]
    c.cross("compare_subscript_contains", [("value", p) for p in subs] + results[-3:], subs)
    footers = [("value", docx(c, ["x"], footer="Page 1")), ("value", docx(c, ["x"], footer="Page")),
               ("value", plain[0])] + results[-3:]
    for kind, p in footers:
        c.add("has_page_numbers_in_footers", p, kind=kind)
    centered = [("value", docx(c, [("Title", {"center": True}), "body"])), ("value", plain[0]),
                ("empty", plain[6])] + results[-3:]
    for kind, p in centered:
        c.add("is_first_line_centered", p, kind=kind)
    breaks = [("value", docx(c, [[("a", {"page_break": True})], "b"])),
              ("value", docx(c, [[("a", {"page_break": True})], [("b", {"page_break": True})]])), ("value", plain[0])]
    c.cross("contains_page_break", breaks + results[-3:], [{}, {"page_break_count": 1}, {"page_break_count": 2}])
    tabs = [docx(c, [("Name\tValue one", {"tabs": [914400]}), ("Other\tx y", {"tabs": [914400]})]),
            docx(c, [("Name\tValue one", {"tabs": [1000000]}), ("Other\tx y", {"tabs": [914400]})]),
            docx(c, [("Name\tValue one", {}), ("Other\tx y", {})])]
    c.cross("check_tabstops", [("value", p) for p in tabs] + results[-3:], tabs,
            options=[{}, {"word_number_split_by_tabstop": 1, "index": 0}, {"word_number_split_by_tabstop": 2, "index": 1}])
    images = [docx(c, ["x"], image=png(c, (20, 10), (200, 0, 0))), docx(c, ["x"], image=png(c, (20, 10), (200, 0, 0))),
              docx(c, ["x"], image=png(c, (20, 10), (0, 200, 0))), plain[0]]
    c.cross("compare_docx_images", [("value", p) for p in images] + results[-3:], images)
    c.cross("compare_contains_image", [("value", p) for p in images] + results[-3:], images)
    struck = [docx(c, ["Hello world", [("Second", {"strike": True}), (" para", {"strike": True})]]),
              docx(c, ["Hello world", [("Second", {"strike": True}), (" para", {})]]), plain[0]]
    c.cross("evaluate_strike_through_last_paragraph", [("value", p) for p in struck] + [("empty", plain[6])] + results[-3:],
            [plain[0], plain[6]])
    italic = [docx(c, [[("Hello", {"italic": True, "size": 14}), (" world", {})], "Second para"]),
              docx(c, [[("Hello", {"italic": True, "size": 12}), (" world", {})], "Second para"]), plain[0]]
    c.cross("check_italic_font_size_14", [("value", p) for p in italic] + results[-3:], [plain[0]])
    red, blue = (255, 0, 0), (0, 0, 255)
    colored = [docx(c, ["t"], tables=[[[("apple", red), ("banana", blue)], [("", None), ("Egg", (250, 5, 5))]]]),
               docx(c, ["t"], tables=[[[("apple", blue), ("banana", blue)]]]),
               docx(c, ["t"], tables=[[[("apple", None)]]])]
    c.cross("evaluate_colored_words_in_tables", [("value", p) for p in colored] + results[-3:],
            [docx(c, ["t"])], options=[{}, {"threshold": 50}])
    words = [docx(c, ["1/2 3/4", "5/6"]), docx(c, ["1/2 3/4 5/6 7/8"]), docx(c, ["1/2"])]
    c.cross("fuzzy_place_math", [("value", p) for p in words] + results[-3:],
            [{"expected": ["1/2", "3/4", "5/6"]}, {"expected": []}, *c.task_rules("fuzzy_place_math")])
    for a, b in itertools.product([docx(c, ["x"])], [None]):
        c.add("compare_docx_files", a, b, kind="none")
