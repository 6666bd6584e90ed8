"""The bundled desktop-app tasks (LibreOffice Calc/Writer/Impress, GIMP, VLC), written by generate.py.

Each task sets itself up the OSWorld way, inside the task sandbox: an `execute` step makes the input file
with the harness's Python (`python3` there has openpyxl, python-docx, python-pptx and Pillow), then `open`
(or `launch` and a wait for the window) starts the real app. Evaluators are OSWorld's own metrics; where
a metric compares against a reference file, the postconfig writes that file into /tmp when the episode
is over, so the agent never sees it.

Oracles drive the apps the way a competent user does: menus, dialogs and shortcuts, clicking on screen
where that is what one would do. Pointer targets are screen pixels of the 1920x1080 display (measured
once on screenshots of these apps under openbox; the window layouts are fixed: LibreOffice fills the
screen, GIMP and VLC open where openbox places them), sent on Qwen's 0..1000 grid.
"""

from __future__ import annotations

import json

from agent.actions import Action
from generate import DONE, key, task, type_, wait

SCREEN = (1920, 1080)
EXPECTED_DIR = "/tmp/qvl-expected"  # reference files, written by the postconfig


def click(x_px: float, y_px: float, action: str = "left_click") -> str:
    return Action(action=action, coordinate=(round(x_px * 1000 / SCREEN[0]), round(y_px * 1000 / SCREEN[1]))
                  ).tool_call_text()


def python_step(code: str) -> dict:
    """An `execute` step running `code` with the sandbox's python3."""
    return {"type": "execute", "parameters": {"command": ["python3", "-c", code]}}


def wait_for_window(title: str, seconds: int = 60) -> dict:
    """Setup that returns once a window titled like `title` is mapped (an app started by `launch`)."""
    script = (f"for i in $(seq {seconds * 4}); do wmctrl -l | grep -qF {json.dumps(title)} && exit 0; sleep 0.25; "
              f"done; exit 1")
    return {"type": "execute", "parameters": {"command": ["bash", "-c", script]}}


def open_file(path: str) -> dict:
    return {"type": "open", "parameters": {"path": path}}


def vm_file(path: str, dest: str | None = None) -> dict:
    return {"type": "vm_file", "path": path, "dest": dest or path.rsplit("/", 1)[1]}


def expected_file(name: str) -> dict:
    # its own name in the task cache: the result's copy (same file name) must not be overwritten
    return vm_file(f"{EXPECTED_DIR}/{name}", dest=f"expected-{name}")


def write_expected(code: str) -> dict:
    """Postconfig that writes the reference file(s) (`code` sees `out`, the folder)."""
    return python_step(f"import os; out = {EXPECTED_DIR!r}; os.makedirs(out, exist_ok=True)\n" + code)


def app_task(task_id: str, domain: str, instruction: str, config: list[dict], evaluator: dict) -> dict:
    return task(task_id, instruction, snapshot=domain, apps=[domain], config=config, evaluator=evaluator)


# -- LibreOffice Calc ----------------------------------------------------------------------------------

NAME_BOX = (66, 107)  # Calc's Name Box: type a cell or range there to go to it
SALES_ROWS = [["Month", "Revenue"], ["Jan", 120], ["Feb", 95], ["Mar", 140], ["Apr", 110]]
SALES = "/home/user/Documents/sales.xlsx"


def workbook_code(path: str, sheets: dict[str, list[list]]) -> str:
    """Python that writes an xlsx with these sheets to `path` (a Python expression)."""
    return (f"import openpyxl; wb = openpyxl.Workbook(); wb.remove(wb.active)\n"
            f"for name, rows in {sheets!r}.items():\n"
            f"    ws = wb.create_sheet(name)\n"
            f"    for r in rows: ws.append(r)\n"
            f"wb.save({path})")


def calc_task(task_id: str, instruction: str, turns: list[str], expected: dict[str, list[list]],
              rules: list[dict]) -> tuple[dict, list[str]]:
    spec = app_task(task_id, "libreoffice_calc", instruction,
                    config=[python_step(workbook_code(repr(SALES), {"Sheet1": SALES_ROWS})), open_file(SALES)],
                    evaluator={"func": "compare_table", "result": vm_file(SALES),
                               "expected": expected_file("sales.xlsx"), "options": {"rules": rules},
                               "postconfig": [write_expected(workbook_code("f'{out}/sales.xlsx'", expected))]})
    return spec, [wait(1), *turns, key("ctrl", "s"), wait(2), DONE]


def goto_cell(ref: str) -> list[str]:
    return [click(*NAME_BOX), type_(ref + "\n")]


SHEET_DATA = [{"type": "sheet_data", "sheet_idx0": "RI0", "sheet_idx1": "EI0"}]


def calc_tasks() -> list[tuple[dict, list[str]]]:
    return [
        calc_task(
            "calc-total-revenue",
            "In ~/Documents/sales.xlsx, which is open in LibreOffice Calc, put the total revenue in cell B6 as a "
            "formula, right under the monthly numbers, and save the file.",
            [*goto_cell("B6"), type_("=SUM(B2:B5)\n")],
            {"Sheet1": SALES_ROWS + [[None, 465]]}, SHEET_DATA),
        calc_task(
            "calc-bonus-column",
            "In the open spreadsheet, add a column C headed 'Bonus' whose rows 2 to 5 are 10% of the revenue in "
            "column B (use formulas), then save.",
            [*goto_cell("C1"), type_("Bonus\n"), *goto_cell("C2:C5"), type_("=B2*0.1"), key("alt", "enter")],
            {"Sheet1": [SALES_ROWS[0] + ["Bonus"]] + [r + [r[1] * 0.1] for r in SALES_ROWS[1:]]}, SHEET_DATA),
        calc_task(
            "calc-rename-and-add-sheet",
            "Rename the sheet of the open workbook to 'Budget', add a new sheet named 'Notes' after it, and save.",
            # the tab's context menu; Sheet > Insert Sheet at End
            [click(153, 1047, "right_click"), wait(0.5), click(232, 883), wait(1), type_("Budget\n"),
             click(264, 28), wait(0.5), click(334, 229), wait(1), type_("Notes\n")],
            {"Budget": SALES_ROWS, "Notes": []},
            [{"type": "sheet_name"}] + SHEET_DATA),
    ]


# -- LibreOffice Writer --------------------------------------------------------------------------------

def docx_code(path: str, paragraphs: list[str]) -> str:
    """Python that writes a docx of these paragraphs to `path` (a Python expression)."""
    return f"import docx; d = docx.Document(); [d.add_paragraph(p) for p in {paragraphs!r}]; d.save({path})"


def writer_tasks() -> list[tuple[dict, list[str]]]:
    meeting = ["Meeting notes", "The committee will meet on Tuesday at 10:00."]
    new_doc = app_task(
        "writer-new-meeting-notes", "libreoffice_writer",
        "In the new LibreOffice Writer document, write two lines: 'Meeting notes' and then 'The committee will "
        "meet on Tuesday at 10:00.'. Save it as meeting.docx in ~/Documents.",
        config=[{"type": "launch", "parameters": {"command": ["libreoffice", "--writer"]}},
                wait_for_window("LibreOffice Writer")],
        evaluator={"func": "compare_docx_files", "result": vm_file("/home/user/Documents/meeting.docx"),
                   "expected": expected_file("meeting.docx"),
                   "postconfig": [write_expected(docx_code("f'{out}/meeting.docx'", meeting))]})
    # Save As opens in ~/Documents with Word as the file type (the preset's default format)
    new_doc_turns = [wait(1), type_("\n".join(meeting)), key("ctrl", "shift", "s"), wait(1.5), key("ctrl", "a"),
                     type_("meeting\n"), wait(2), DONE]

    before = ["Paint guide", "Pick a colour for the walls.",
              "The colour of the door is blue; the colour of the roof is red."]
    after = [p.replace("colour", "color") for p in before]
    guide = "/home/user/Documents/guide.docx"
    replace = app_task(
        "writer-replace-spelling", "libreoffice_writer",
        "In the document open in Writer, replace every 'colour' with the American spelling 'color', then save it.",
        config=[python_step(docx_code(repr(guide), before)), open_file(guide)],
        evaluator={"func": "compare_docx_files", "result": vm_file(guide), "expected": expected_file("guide.docx"),
                   "postconfig": [write_expected(docx_code("f'{out}/guide.docx'", after))]})
    # Find and Replace: the Find field has the focus; Replace field, Replace All, Close
    replace_turns = [wait(1), key("ctrl", "h"), wait(1.5), type_("colour"), click(989, 455), type_("color"),
                     click(1178, 501), wait(1), click(1190, 709), wait(0.5), key("ctrl", "s"), wait(2), DONE]
    return [(new_doc, new_doc_turns), (replace, replace_turns)]


# -- LibreOffice Impress -------------------------------------------------------------------------------

REVIEW = "/home/user/Documents/review.pptx"
REVIEW_CODE = ("import pptx; p = pptx.Presentation()\n"
               "s = p.slides.add_slide(p.slide_layouts[0]); s.shapes.title.text = 'Quarterly review'\n"
               "s.placeholders[1].text = 'Sales and costs'\n"
               "s = p.slides.add_slide(p.slide_layouts[1]); s.shapes.title.text = 'Agenda'\n"
               f"p.save({REVIEW!r})")
IMPRESS_WORKSPACE = (224, 791)  # grey area beside the slide: the document gets the focus back


def impress_tasks() -> list[tuple[dict, list[str]]]:
    config = [python_step(REVIEW_CODE), open_file(REVIEW)]
    portrait = app_task(
        "impress-portrait-slides", "libreoffice_impress",
        "Change the slides of the open presentation to portrait orientation and save it.",
        config=config, evaluator={"func": "check_slide_orientation_Portrait", "result": vm_file(REVIEW)})
    # the sidebar's Slide panel: Orientation list, Portrait
    portrait_turns = [wait(1), click(1774, 170), wait(0.7), click(1728, 203), wait(1),
                      click(*IMPRESS_WORKSPACE), key("ctrl", "s"), wait(2), DONE]
    wipe = app_task(
        "impress-wipe-transition", "libreoffice_impress",
        "Give the first slide of the open presentation a 'Wipe' transition and save it.",
        config=config, evaluator={"func": "check_transition", "result": vm_file(REVIEW),
                                  "expected": {"type": "rule", "rules": {"slide_idx": 0, "transition_type": "wipe"}}})
    # Slide > Slide Transition opens its sidebar deck; Wipe is the second of the grid
    wipe_turns = [wait(1), click(216, 28), wait(0.7), click(273, 491), wait(1.5), click(1771, 142), wait(3),
                  click(*IMPRESS_WORKSPACE), key("ctrl", "s"), wait(2), DONE]
    return [(portrait, portrait_turns), (wipe, wipe_turns)]


# -- GIMP ----------------------------------------------------------------------------------------------

PHOTO = "/home/user/Pictures/photo.png"
PHOTO_CODE = ("from PIL import Image, ImageDraw; im = Image.new('RGB', (400, 300), (30, 90, 160))\n"
              "d = ImageDraw.Draw(im); d.rectangle((20, 40, 150, 260), fill=(240, 200, 40))\n"
              "d.ellipse((220, 60, 300, 140), fill=(200, 30, 30))\n"
              "d.polygon([(330, 280), (390, 180), (390, 280)], fill=(20, 160, 60))\n"
              f"im.save({PHOTO!r})")


def export_as(name: str) -> list[str]:
    """File > Export As (the folder is the image's), then the PNG options' Export."""
    return [key("ctrl", "shift", "e"), wait(1.5), key("ctrl", "a"), type_(name + "\n"), wait(1.5), key("enter"),
            wait(2)]


def gimp_tasks() -> list[tuple[dict, list[str]]]:
    config = [python_step(PHOTO_CODE), open_file(PHOTO)]  # GIMP opens PNGs here, as on OSWorld's Ubuntu
    flip = app_task(
        "gimp-flip-export", "gimp",
        "Flip the image open in GIMP horizontally and export it as photo_flipped.png next to the original.",
        config=config,
        evaluator={"func": "check_image_mirror", "result": vm_file(PHOTO),
                   "expected": vm_file("/home/user/Pictures/photo_flipped.png")})
    # Image > Transform > Flip Horizontally, by the menus' keys
    flip_turns = [wait(2), key("alt", "i"), wait(0.5), key("t"), wait(0.5), key("h"), wait(1),
                  *export_as("photo_flipped.png"), DONE]
    small = "/home/user/Pictures/small.png"
    scale = app_task(
        "gimp-scale-export", "gimp",
        "Scale the image open in GIMP to 200 pixels wide, keeping its proportions, and export it as small.png in "
        "the same folder.",
        config=config,
        evaluator={"func": ["check_image_size", "check_structure_sim_resized"], "conj": "and",
                   "result": [vm_file(small), vm_file(PHOTO)],
                   "expected": [{"type": "rule", "rules": {"width": 200, "height": 150}}, vm_file(small)]})
    # Image > Scale Image: the width field has the focus and the chain keeps the ratio; Scale is alt+s
    scale_turns = [wait(2), key("alt", "i"), wait(0.5), key("s"), wait(1.5), type_("200\t"), wait(0.5),
                   key("alt", "s"), wait(1.5), *export_as("small.png"), DONE]
    return [(flip, flip_turns), (scale, scale_turns)]


# -- VLC -----------------------------------------------------------------------------------------------

VLC_SAVE = (1224, 868)  # the Simple Preferences' Save button


def vlc_task(task_id: str, instruction: str, evaluator: dict, turns: list[str]) -> tuple[dict, list[str]]:
    spec = app_task(task_id, "vlc", instruction,
                    config=[{"type": "launch", "parameters": {"command": ["vlc"]}},
                            wait_for_window("VLC media player")],
                    evaluator=evaluator)
    return spec, [wait(1), key("ctrl", "p"), wait(1.5), *turns, click(*VLC_SAVE), wait(1), DONE]


def vlc_tasks() -> list[tuple[dict, list[str]]]:
    recordings = "/home/user/Videos/recordings"
    return [
        vlc_task(
            "vlc-recordings-folder",
            f"Make VLC save its recordings in {recordings}.",
            {"func": "is_vlc_recordings_folder", "result": {"type": "vlc_config", "dest": "vlcrc"},
             "expected": {"type": "rule", "rules": {"recording_file_path": recordings}}},
            # Input / Codecs: "Record directory or filename"
            [click(1006, 237), wait(1), click(1038, 692), type_(recordings)]),
        vlc_task(
            "vlc-start-minimal-view",
            "Set VLC to start in minimal view mode.",
            {"func": "check_qt_minimal_view", "result": {"type": "vlc_config", "dest": "vlcrc"},
             "expected": {"type": "rule", "rules": {"expected_qt_minimal_view": "1"}}},
            [click(737, 483)]),  # Interface: "Start in minimal view mode"
    ]


def app_tasks() -> dict[str, list[tuple[dict, list[str]]]]:
    return {
        "libreoffice_calc": calc_tasks(),
        "libreoffice_writer": writer_tasks(),
        "libreoffice_impress": impress_tasks(),
        "gimp": gimp_tasks(),
        "vlc": vlc_tasks(),
    }
