"""Impress metrics (OSWorld `metrics/slides.py`): .pptx through python-pptx and its XML, LibreOffice's
registry (presenter console, autosave), the accessibility tree (left panel)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
from math import sqrt
from typing import Any

A_NS = "http://schemas.openxmlformats.org/drawingml/2006/main"
P_NS = "http://schemas.openxmlformats.org/presentationml/2006/main"
PPTX_NS = {"a": A_NS, "p": P_NS}
OOR_NS = {"oor": "http://openoffice.org/2001/registry"}
PICTURE, TABLE, FREEFORM = 13, 19, 5  # MSO_SHAPE_TYPE values OSWorld compares with


def _presentation(path: str | None):
    """python-pptx's Presentation; None opens python-pptx's blank default deck, as in OSWorld."""
    from pptx import Presentation

    return Presentation(path)


def _readable(path: Any) -> bool:
    import os

    return path is None or (isinstance(path, str) and os.path.isfile(path))


def check_presenter_console_disable(config_file: str | None) -> float:
    """registrymodifications.xcu sets Impress/Misc/Start EnablePresenterScreen to false."""
    try:
        root = ET.parse(config_file).getroot()
        for prop in root.findall(".//item[@oor:path='/org.openoffice.Office.Impress/Misc/Start']"
                                 "/prop[@oor:name='EnablePresenterScreen']", OOR_NS):
            return float(prop.find("value").text.lower() == "false")
        return 0.0
    except Exception:
        return 0.0


def check_image_stretch_and_center(modified: str | None, original: str | None) -> float:
    """The first slide's first picture (found in the result by its bytes) fills the slide within
    half an inch and is centred within half an inch."""
    from pptx.util import Inches

    if not (_readable(modified) and _readable(original)):
        return 0.0
    try:
        original_prs, modified_prs = _presentation(original), _presentation(modified)
    except Exception:  # OSWorld: raises
        return 0.0
    if not original_prs.slides or not modified_prs.slides:
        return 0.0
    originals = [s for s in original_prs.slides[0].shapes if s.shape_type == PICTURE]
    modifieds = [s for s in modified_prs.slides[0].shapes if s.shape_type == PICTURE]
    if not originals:
        return 0.0
    target = None
    for shape in modifieds:
        if originals[0].image.blob == shape.image.blob:
            target = shape
    if target is None:
        return 0.0
    w, h = original_prs.slide_width, original_prs.slide_height
    tol = Inches(0.5)
    if (abs(target.width - w) > tol or abs(target.height - h) > tol
            or abs(target.left - (w - target.width) / 2) > tol or abs(target.top - (h - target.height) / 2) > tol):
        return 0.0
    return 1.0


def _text_shapes(slide) -> list:
    """Shapes with text, groups searched recursively."""
    out = []

    def walk(shape) -> None:
        if hasattr(shape, "text") and hasattr(shape, "text_frame"):
            out.append(shape)
        if hasattr(shape, "shapes"):
            for sub in shape.shapes:
                walk(sub)

    for shape in slide.shapes:
        walk(shape)
    return out


def _background_rgb(slide) -> Any:
    fill = slide.background.fill
    if fill.type == 1:
        return fill.fore_color.rgb
    if fill.type == 5:
        master = slide.slide_layout.slide_master.background.fill
        return master.fore_color.rgb if master.type == 1 else None
    return None


def _align(paragraph) -> Any:
    """A paragraph's alignment, None (inherited) read as left."""
    from pptx.enum.text import PP_ALIGN

    return PP_ALIGN.LEFT if paragraph.alignment is None else paragraph.alignment


def _bullets(xml: str) -> list[tuple]:
    """(level, bullet char, text, bullet colour) of every non-blank paragraph of a slide's XML."""
    out = []
    for paragraph in ET.fromstring(xml).findall(".//a:p", PPTX_NS):
        ppr = paragraph.find("a:pPr", PPTX_NS)
        if ppr is not None:
            level = ppr.get("lvl")
            char_el = ppr.find("a:buChar", PPTX_NS)
            char = char_el.get("char") if char_el is not None else "No Bullet"
            color_el = ppr.find("a:buClr/a:srgbClr", PPTX_NS)
            color = color_el.get("val") if color_el is not None else "No Color"
        else:
            level, char, color = "No Level", "No Bullet", "No Color"
        text = "".join(t.text for t in paragraph.findall(".//a:t", PPTX_NS))
        if text.strip():
            out.append((level, char, text, color))
    return out


def _same_bullets(b1: list[tuple], b2: list[tuple]) -> bool:
    """Same texts, bullet chars and levels (None = "0"); colours are not compared."""
    if len(b1) != len(b2):
        return False
    return all(t1 == t2 and c1 == c2 and ("0" if l1 is None else l1) == ("0" if l2 is None else l2)
               for (l1, c1, t1, _), (l2, c2, t2, _) in zip(b1, b2))


def compare_pptx_files(file1: str | None, file2: str | None, **options: Any) -> float:
    """OSWorld's structural .pptx comparison, check for check in its order (1 or 0).

    Per slide: background colour, notes, shape count; per shape: position/size (relative tolerance
    `approximately_tolerance`, 0.005), the task-specific position rules, table cells' run formats,
    text, paragraph count, alignment (None = left), level, run count, and per run font name/size/bold/
    italic/colour/underline/strike and the slide's bullets; then the alignment of all text shapes,
    groups included. Each `examine_*` option switches one check (see OSWorld for the defaults, kept
    here). A result python-pptx cannot open scores 0 (OSWorld: raises).
    """
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    if not _readable(file1):
        return 0.0
    try:
        prs1 = _presentation(file1)
    except Exception:
        return 0.0
    prs2 = _presentation(file2)
    tolerance = options.get("approximately_tolerance", 0.005)
    flag = {name: options.get(f"examine_{name}", default) for name, default in (
        ("number_of_slides", True), ("shape", True), ("text", True), ("indent", True), ("font_name", True),
        ("font_size", True), ("font_bold", True), ("font_italic", True), ("color_rgb", True),
        ("font_underline", True), ("strike_through", True), ("alignment", True), ("title_bottom_position", False),
        ("table_bottom_position", False), ("right_position", False), ("top_position", False),
        ("shape_for_shift_size", False), ("image_size", False), ("modify_height", False), ("bullets", True),
        ("background_color", True), ("note", True))}

    def close(a: Any, b: Any) -> bool:
        if a == b:
            return True
        if a == 0 or b == 0:
            return False
        return abs(a - b) / max(abs(a), abs(b)) <= tolerance

    def moved(s1, s2) -> bool:
        return (not close(s1.left, s2.left) or not close(s1.top, s2.top) or not close(s1.width, s2.width)
                or not close(s1.height, s2.height))

    def unset(v: Any) -> bool:
        return v is None or v is False

    def underline_differs(u1: Any, u2: Any) -> bool:
        return (u1 is not None and u2 is not None) or (u1 is None and u2 is True) or (u1 is True and u2 is None)

    if len(prs1.slides) != len(prs2.slides) and flag["number_of_slides"]:
        return 0.0
    for slide_idx, (slide1, slide2) in enumerate(zip(prs1.slides, prs2.slides), start=1):
        if _background_rgb(slide1) != _background_rgb(slide2) and flag["background_color"]:
            return 0.0
        # Reading notes_slide creates an empty one when missing, so the text always exists.
        if (slide1.notes_slide.notes_text_frame.text.strip() != slide2.notes_slide.notes_text_frame.text.strip()
                and flag["note"]):
            return 0.0
        text_shapes1, text_shapes2 = _text_shapes(slide1), _text_shapes(slide2)
        if len(slide1.shapes) != len(slide2.shapes):
            return 0.0
        bullets: list = []  # the slide's bullets, read once (OSWorld re-reads the same slide XML per run)

        def same_bullets(run1, run2) -> bool:
            try:
                if not bullets:
                    bullets.append((_bullets(run1.part.blob.decode("utf-8")), _bullets(run2.part.blob.decode("utf-8"))))
                return _same_bullets(*bullets[0])
            except Exception:  # OSWorld skips the bullet check when the XML cannot be read
                return True

        for shape1, shape2 in zip(slide1.shapes, slide2.shapes):
            texts = hasattr(shape1, "text") and hasattr(shape2, "text")
            if flag["title_bottom_position"]:
                if texts and shape1.text == shape2.text:
                    if shape1.text == "Product Comparison" and (shape1.top <= shape2.top or shape1.top < 3600000):
                        return 0.0
                elif moved(shape1, shape2):
                    return 0.0
            if flag["table_bottom_position"]:
                if slide_idx == 3 and shape1.shape_type == TABLE and shape2.shape_type == TABLE:
                    if shape1.top <= shape2.top or shape1.top < 3600000:
                        return 0.0
                elif moved(shape1, shape2):
                    return 0.0
            if flag["right_position"]:
                if slide_idx == 2 and not hasattr(shape1, "text") and not hasattr(shape2, "text"):
                    if shape1.left <= shape2.left or shape1.left < 4320000:
                        return 0.0
            if flag["top_position"]:
                if slide_idx == 2 and shape1.shape_type == PICTURE and shape2.shape_type == PICTURE:
                    if shape1.top >= shape2.top or shape1.top > 1980000:
                        return 0.0
            if flag["shape_for_shift_size"] and moved(shape1, shape2):
                if not (texts and shape1.text == shape2.text
                        and shape1.text == "Elaborate on what you want to discuss."):
                    return 0.0
            if moved(shape1, shape2) and flag["shape"]:
                return 0.0
            if flag["image_size"]:
                if shape1.shape_type == PICTURE and shape2.shape_type == PICTURE:
                    if not close(shape1.width, shape2.width) or not close(shape1.height, shape2.height):
                        return 0.0
                elif moved(shape1, shape2):
                    return 0.0
            if flag["modify_height"]:
                if (not hasattr(shape1, "text") and not hasattr(shape2, "text")
                        or shape1.shape_type == FREEFORM and shape2.shape_type == FREEFORM):
                    if not close(shape1.height, shape2.height):
                        return 0.0
                elif moved(shape1, shape2):
                    return 0.0

            if shape1.shape_type == MSO_SHAPE_TYPE.TABLE:
                table1, table2 = shape1.table, shape2.table
                if len(table1.rows) != len(table2.rows) or len(table1.columns) != len(table2.columns):
                    return 0.0
                for r in range(len(table1.rows)):
                    for c in range(len(table1.columns)):
                        cell1, cell2 = table1.cell(r, c), table2.cell(r, c)
                        if len(cell1.text_frame.paragraphs) != len(cell2.text_frame.paragraphs):
                            return 0.0
                        for para1, para2 in zip(cell1.text_frame.paragraphs, cell2.text_frame.paragraphs):
                            if len(para1.runs) != len(para2.runs):
                                return 0.0
                            for run1, run2 in zip(para1.runs, para2.runs):
                                f1, f2 = run1.font, run2.font
                                if hasattr(f1.color, "rgb") and hasattr(f2.color, "rgb"):
                                    if f1.color.rgb != f2.color.rgb and flag["color_rgb"]:
                                        return 0.0
                                if f1.bold != f2.bold and not (unset(f1.bold) and unset(f2.bold)):
                                    return 0.0
                                if f1.italic != f2.italic and not (unset(f1.italic) and unset(f2.italic)):
                                    return 0.0
                                if f1.underline != f2.underline and underline_differs(f1.underline, f2.underline):
                                    return 0.0

            if texts:
                if shape1.text.strip() != shape2.text.strip() and flag["text"]:
                    return 0.0
                paras1, paras2 = shape1.text_frame.paragraphs, shape2.text_frame.paragraphs
                if len(paras1) != len(paras2):
                    return 0.0
                for para1, para2 in zip(paras1, paras2):
                    if flag["alignment"]:
                        if _align(para1) != _align(para2):
                            return 0.0
                    if para1.text != para2.text and flag["text"]:
                        return 0.0
                    if para1.level != para2.level and flag["indent"]:
                        return 0.0
                    if len(para1.runs) != len(para2.runs):
                        return 0.0
                    for run1, run2 in zip(para1.runs, para2.runs):
                        f1, f2 = run1.font, run2.font
                        if f1.name != f2.name and flag["font_name"]:
                            return 0.0
                        if f1.size != f2.size and flag["font_size"]:
                            return 0.0
                        if f1.bold != f2.bold and flag["font_bold"] and not (unset(f1.bold) and unset(f2.bold)):
                            return 0.0
                        if (f1.italic != f2.italic and flag["font_italic"]
                                and not (unset(f1.italic) and unset(f2.italic))):
                            return 0.0
                        if hasattr(f1.color, "rgb") and hasattr(f2.color, "rgb"):
                            if f1.color.rgb != f2.color.rgb and flag["color_rgb"]:
                                return 0.0
                        if (f1.underline != f2.underline and flag["font_underline"]
                                and underline_differs(f1.underline, f2.underline)):
                            return 0.0
                        if (f1._element.attrib.get("strike", "noStrike") != f2._element.attrib.get("strike", "noStrike")
                                and flag["strike_through"]):
                            return 0.0
                        if flag["bullets"] and not same_bullets(run1, run2):
                            return 0.0

        if flag["alignment"] and len(text_shapes1) == len(text_shapes2):
            for t1, t2 in zip(text_shapes1, text_shapes2):
                if t1.text.strip() != t2.text.strip() and flag["text"]:
                    return 0.0
                if len(t1.text_frame.paragraphs) != len(t2.text_frame.paragraphs):
                    return 0.0
                for p1, p2 in zip(t1.text_frame.paragraphs, t2.text_frame.paragraphs):
                    if _align(p1) != _align(p2):
                        return 0.0
        elif len(text_shapes1) != len(text_shapes2):
            return 0.0
    return 1.0


def check_slide_orientation_Portrait(pptx: str | None) -> float:
    if not _readable(pptx):
        return 0.0
    try:
        prs = _presentation(pptx)
    except Exception:  # OSWorld: raises
        return 0.0
    return float(prs.slide_width < prs.slide_height)


def evaluate_presentation_fill_to_rgb_distance(pptx: str | None, rules: dict) -> float:
    """1 minus the mean over slides of the background colour's distance to `rgb` (normalised to [0, 1]);
    a slide without a solid colour, or still `original_rgb`, counts as distance 1."""
    rgb = rules["rgb"]
    try:
        original = rules["original_rgb"]
    except Exception:
        original = None

    def color_rgb(color) -> Any:
        try:
            return color.rgb if hasattr(color, "rgb") else None
        except Exception:
            return None

    def distance(slide) -> float:
        fill = slide.background.fill
        if fill.type == 1:
            got = color_rgb(fill.fore_color)
        elif fill.type == 5:
            master = slide.slide_layout.slide_master.background.fill
            if master.type != 1:
                return 1
            got = color_rgb(master.fore_color)
        else:
            return 1
        if got is None:
            return 1
        r1, g1, b1 = got
        r2, g2, b2 = rgb
        if original is not None:
            r3, g3, b3 = original
            if (r1, g1, b1) == (r3, g3, b3):
                return 1
        return sqrt((r1 - r2) ** 2 + (g1 - g2) ** 2 + (b1 - b2) ** 2) / sqrt(3 * 255 ** 2)

    if not _readable(pptx):
        return 0.0
    try:
        prs = _presentation(pptx)
    except Exception:  # OSWorld: raises
        return 0.0
    return 1 - sum(distance(s) for s in prs.slides) / len(prs.slides)


def check_left_panel(accessibility_tree: str | None) -> float:
    """Impress's slide panel ("Slides View" document frame) is in the accessibility tree; a tree that
    does not parse scores 0 (OSWorld: raises)."""
    try:
        root = ET.fromstring(accessibility_tree)
    except (ET.ParseError, TypeError):
        return 0.0
    return float(any(frame.attrib.get("name") == "Slides View" for frame in root.iter("document-frame")))


def check_transition(pptx: str | None, rules: dict) -> float:
    """Slide `slide_idx` (0-based) has a `<p:transition>` holding a `<p:{transition_type}>`."""
    try:
        archive = zipfile.ZipFile(pptx, "r")
    except (OSError, zipfile.BadZipFile, TypeError, ValueError):  # OSWorld: raises
        return 0.0
    with archive:
        name = f"ppt/slides/slide{rules['slide_idx'] + 1}.xml"
        try:
            archive.getinfo(name)
        except KeyError:
            return 0.0
        with archive.open(name) as f:
            root = ET.parse(f).getroot()
    transition = root.find(".//p:transition", PPTX_NS)
    if transition is None:
        return 0.0
    return float(transition.find(f".//p:{rules['transition_type']}", PPTX_NS) is not None)


def check_page_number_colors(pptx: str | None, rules: dict) -> float:
    """The second-to-last solid fill colour of slide master 1 is of the named colour family.

    OSWorld reads the hex digits from offset 1 (as if the value started with '#'), so the red
    component is taken from the red and green digits; kept."""
    color = rules["color"]

    def rgb(s: str) -> tuple[int, int, int]:
        return int(s[1:3], 16), int(s[3:5], 16), int(s[5:7], 16)

    def is_family(name: str, s: str, threshold: int = 50) -> bool:
        r, g, b = rgb(s)
        return {"red": r > g + threshold and r > b + threshold, "blue": b > g + threshold and b > r + threshold,
                "green": g > r + threshold and g > b + threshold,
                "black": r < threshold and g < threshold and b < threshold}[name]

    try:
        archive = zipfile.ZipFile(pptx, "r")
    except (OSError, zipfile.BadZipFile, TypeError, ValueError):  # OSWorld: raises
        return 0.0
    with archive, archive.open("ppt/slideMasters/slideMaster1.xml") as f:
        root = ET.parse(f).getroot()
    value = root.findall(".//a:solidFill//a:srgbClr", PPTX_NS)[-2].get("val")
    if value is None:
        return 0.0
    if color in ("red", "blue", "green", "black") and not is_family(color, value):
        return 0.0
    return 1.0


def check_auto_saving_time(xcu: str | None, rules: dict) -> float:
    """registrymodifications.xcu's Common/Save/Document AutoSaveTimeIntervall (the last one) equals
    `rules["minutes"]`. A file that does not parse scores 0 (OSWorld returns None there)."""
    minutes = rules["minutes"]
    try:
        root = ET.parse(xcu).getroot()
    except (ET.ParseError, OSError, TypeError):
        return 0.0
    value = None
    for item in root.findall(".//item"):
        if item.get("{http://openoffice.org/2001/registry}path") == "/org.openoffice.Office.Common/Save/Document":
            for prop in item.findall(".//prop"):
                if prop.get("{http://openoffice.org/2001/registry}name") == "AutoSaveTimeIntervall":
                    value = prop.find(".//value").text
                    break
    if value is None:
        return 0.0
    return float(int(value) == minutes)


METRICS = {f.__name__: f for f in (
    check_presenter_console_disable, check_image_stretch_and_center, compare_pptx_files,
    check_slide_orientation_Portrait, evaluate_presentation_fill_to_rgb_distance, check_left_panel, check_transition,
    check_page_number_colors, check_auto_saving_time)}
