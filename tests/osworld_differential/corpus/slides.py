"""Cases for OSWorld's slides.py metrics: decks written with python-pptx, variations one property at a time."""

from __future__ import annotations

import itertools

from osworld_differential.corpus.media import png

BASE = {"slides": [{"title": "Product Comparison", "body": ["First point", "Second point"], "notes": "say hi"},
                   {"title": "Second", "body": ["Elaborate on what you want to discuss."]}]}


def deck(c, spec: dict, name: str = "d.pptx") -> str:
    from pptx import Presentation
    from pptx.dml.color import RGBColor
    from pptx.enum.text import PP_ALIGN
    from pptx.util import Emu, Inches, Pt

    prs = Presentation()
    if spec.get("portrait"):
        prs.slide_width, prs.slide_height = Inches(7.5), Inches(10)
    for s in spec["slides"]:
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = s["title"]
        body = slide.placeholders[1].text_frame
        for i, text in enumerate(s.get("body", [])):
            p = body.paragraphs[0] if i == 0 else body.add_paragraph()
            run = p.add_run()
            run.text = text
            font = s.get("font", {})
            if font.get("name"):
                run.font.name = font["name"]
            if font.get("size"):
                run.font.size = Pt(font["size"])
            run.font.bold, run.font.italic, run.font.underline = font.get("bold"), font.get("italic"), font.get("underline")
            if font.get("color"):
                run.font.color.rgb = RGBColor(*font["color"])
            if font.get("strike"):
                run.font._element.set("strike", "sngStrike")
            if s.get("align"):
                p.alignment = getattr(PP_ALIGN, s["align"])
            if s.get("level"):
                p.level = s["level"]
        if s.get("notes") is not None:
            slide.notes_slide.notes_text_frame.text = s["notes"]
        if s.get("background"):
            fill = slide.background.fill
            fill.solid()
            fill.fore_color.rgb = RGBColor(*s["background"])
        if s.get("picture"):
            left, top, width, height = s.get("picture_box", (Inches(1), Inches(1), Inches(2), Inches(1)))
            slide.shapes.add_picture(s["picture"], left, top, width, height)
        if s.get("table"):
            rows = s["table"]
            shape = slide.shapes.add_table(len(rows), len(rows[0]), Inches(1), Inches(4), Inches(4), Inches(1))
            for i, row in enumerate(rows):
                for j, text in enumerate(row):
                    cell = shape.table.cell(i, j)
                    cell.text = text
                    if s.get("table_bold"):
                        cell.text_frame.paragraphs[0].runs[0].font.bold = True
        if s.get("move_title"):
            slide.shapes.title.top = Emu(slide.shapes.title.top + s["move_title"])
        if s.get("master_colors"):  # what check_page_number_colors reads: the master's solid fills
            from lxml import etree

            a = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
            spTree = prs.slide_master.shapes._spTree
            holder = etree.SubElement(spTree, a + "extLst")
            for value in s["master_colors"]:
                fill = etree.SubElement(holder, a + "solidFill")
                etree.SubElement(fill, a + "srgbClr").set("val", value)
        if s.get("transition"):
            from lxml import etree

            el = etree.SubElement(slide._element, "{http://schemas.openxmlformats.org/presentationml/2006/main}transition")
            etree.SubElement(el, "{http://schemas.openxmlformats.org/presentationml/2006/main}" + s["transition"])
    path = c.path(name)
    prs.save(path)
    return path


def variant(**changes) -> dict:
    import copy

    spec = copy.deepcopy(BASE)
    for key, value in changes.items():
        if key == "slides":
            spec["slides"] = value
        elif key == "portrait":
            spec["portrait"] = value
        else:
            for s in spec["slides"]:
                s[key] = value
    return spec


def add_cases(c) -> None:
    pic = png(c, (40, 20), (200, 10, 10))
    other_pic = png(c, (40, 20), (10, 10, 200))
    specs = {
        "base": BASE, "copy": BASE, "font_name": variant(font={"name": "Arial"}), "font_size": variant(font={"size": 30}),
        "bold": variant(font={"bold": True}), "bold_false": variant(font={"bold": False}),
        "italic": variant(font={"italic": True}), "underline": variant(font={"underline": True}),
        "color": variant(font={"color": (255, 0, 0)}), "strike": variant(font={"strike": True}),
        "align": variant(align="CENTER"), "align_left": variant(align="LEFT"), "level": variant(level=1),
        "notes": variant(notes="other"), "no_notes": variant(notes=""), "background": variant(background=(0, 0, 255)),
        "background_red": variant(background=(250, 10, 10)), "moved": variant(move_title=500000),
        "nudged": variant(move_title=100), "picture": variant(picture=pic), "picture2": variant(picture=other_pic),
        "table": variant(table=[["a", "b"], ["c", "d"]]), "table_bold": variant(table=[["a", "b"], ["c", "d"]], table_bold=True),
        "text": variant(slides=[{"title": "Product Comparison", "body": ["First point!", "Second point"], "notes": "say hi"},
                                BASE["slides"][1]]),
        "one_slide": variant(slides=BASE["slides"][:1]), "portrait": variant(portrait=True),
        "transition": variant(transition="dissolve"),
        "master_red": variant(slides=[{"title": "t", "master_colors": ["000000", "F01010", "000000"]}]),
        "master_blue": variant(slides=[{"title": "t", "master_colors": ["0010F0", "000000"]}]),
    }
    decks = {k: deck(c, s) for k, s in specs.items()}
    # Every deck against the base with each switch; the position rules against the decks they concern.
    option_sets = [{}, {"examine_shape": False}, {"examine_number_of_slides": False}, {"examine_alignment": False},
                   {"examine_font_name": False, "examine_color_rgb": False}, {"examine_bullets": False},
                   {"examine_note": False, "examine_background_color": False}, {"approximately_tolerance": 0.5}]
    position_sets = [{"examine_title_bottom_position": True}, {"examine_table_bottom_position": True},
                     {"examine_right_position": True}, {"examine_top_position": True}, {"examine_image_size": True},
                     {"examine_shape_for_shift_size": True}, {"examine_modify_height": True, "examine_shape": False}]
    position_sets += [o for o in c.task_options("compare_pptx_files") if o not in option_sets + position_sets]
    for result, opts in itertools.product(decks, option_sets):
        c.add("compare_pptx_files", decks[result], decks["base"], **opts)
    for result, gold, opts in itertools.product(decks, ["moved", "picture", "table", "one_slide"], [{}]):
        c.add("compare_pptx_files", decks[result], decks[gold], **opts)
    positioned = ["base", "moved", "nudged", "picture", "picture2", "table", "table_bold", "one_slide"]
    for result, gold, opts in itertools.product(positioned, positioned, position_sets):
        c.add("compare_pptx_files", decks[result], decks[gold], **opts)
    for kind, result in (("missing", c.missing), ("none", None), ("corrupt", c.text("d.pptx", "nope"))):
        c.add("compare_pptx_files", result, decks["base"], kind=kind)

    results = [("value", p) for p in decks.values()] + [("missing", c.missing), ("none", None),
                                                         ("corrupt", c.text("d.pptx", "nope"))]
    for kind, path in results:
        c.add("check_slide_orientation_Portrait", path, kind=kind)
    c.cross("evaluate_presentation_fill_to_rgb_distance", results,
            [{"rgb": [0, 0, 255]}, {"rgb": [255, 0, 0], "original_rgb": [250, 10, 10]}, {"rgb": [0, 0, 0]},
             *c.task_rules("evaluate_presentation_fill_to_rgb_distance")])
    c.cross("check_transition", results, [{"slide_idx": 0, "transition_type": "dissolve"},
                                          {"slide_idx": 5, "transition_type": "dissolve"},
                                          {"slide_idx": 1, "transition_type": "fade"}])
    c.cross("check_page_number_colors", results, [{"color": "red"}, {"color": "black"}, {"color": "purple"}])
    stretched = deck(c, variant(slides=[{"title": "t", "picture": pic, "picture_box": (0, 0, 9144000, 6858000)}]))
    original = deck(c, variant(slides=[{"title": "t", "picture": pic}]))
    for kind, result in [("value", stretched), ("value", original), ("value", decks["base"]), ("missing", c.missing),
                         ("none", None)]:
        for gold in (original, decks["base"]):
            c.add("check_image_stretch_and_center", result, gold, kind=kind)
