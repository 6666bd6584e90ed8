"""Score the corpus with OSWorld's code (in its venv) and with ours, and classify every case.

Outcomes: a score (float), "none" (the metric returned None), or an error. A case agrees when both
give the same score (within `TOLERANCE`) or neither gives a score. When OSWorld gives no score and we
give 0, the case is *explained* if its (metric, kind) is in `OSWORLD_RAISES`, else it disagrees.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from osworld_differential.corpus import Case, Corpus, GetterCase
from osworld_differential.venv import venv_python

# Same algorithms on the same libraries; only float reduction order differs between numpy builds
# (OSWorld's venv has numpy 1.26, ours may have 2.x) in SSIM/MSE means: far below 1e-9 of a [0, 1] score.
TOLERANCE = 1e-9
RUN_TIMEOUT_S = 1200

_MISSING_OR_NONE = "OSWorld opens the missing file (or the None path) and raises or returns None; we score 0"
_UNPARSABLE = "OSWorld's parser raises on the broken file; we score 0"
_NONE_RESULT = "OSWorld indexes/iterates the None (or wrong-typed) result and raises; we score 0"
# (metric, kind) pairs where OSWorld's metric raises on the agent's output and ours scores 0.
OSWORLD_RAISES: dict[tuple[str, str], str] = {
    **{(m, "missing"): _MISSING_OR_NONE for m in (
        "check_auto_saving_time", "check_brightness_decrease_and_structure_sim", "check_config_status",
        "check_contrast_increase_and_structure_sim", "check_csv", "check_global_key_play_pause",
        "check_green_background", "check_image_file_size", "check_image_mirror", "check_image_size",
        "check_image_stretch_and_center", "check_libre_locale", "check_list",
        "check_one_instance_when_started_from_file", "check_page_number_colors", "check_pdf_pages",
        "check_qt_bgcone", "check_qt_max_volume", "check_qt_minimal_view", "check_qt_slider_colours",
        "check_saturation_increase_and_structure_sim", "check_slide_orientation_Portrait",
        "check_structure_sim_resized", "check_textbox_on_leftside", "check_thunderbird_filter",
        "check_thunderbird_folder", "check_thunderbird_prefs", "check_transition", "check_triangle_position",
        "compare_conference_city_in_order", "compare_config", "compare_htmls", "compare_image_list",
        "compare_images", "compare_pptx_files", "compare_result_files", "compare_terminal_and_txt",
        "compare_text_file", "compare_zip_files", "diff_text_file", "evaluate_presentation_fill_to_rgb_distance",
        "fuzzy_place_math", "is_included_all_json_objects", "is_vlc_playing", "is_vlc_recordings_folder",
        "run_sqlite3")},
    **{(m, "none"): _MISSING_OR_NONE for m in (
        "check_auto_saving_time", "check_file_exists", "check_global_key_play_pause",
        "check_image_stretch_and_center", "check_libre_locale", "check_one_instance_when_started_from_file",
        "check_qt_bgcone", "check_qt_max_volume", "check_qt_minimal_view", "check_qt_slider_colours",
        "compare_conference_city_in_order", "compare_htmls", "is_vlc_playing", "is_vlc_recordings_folder",
        "run_sqlite3")},
    **{(m, "corrupt"): _UNPARSABLE for m in (
        "check_accessibility_tree", "check_brightness_decrease_and_structure_sim",
        "check_contrast_increase_and_structure_sim", "check_csv", "check_direct_json_object",
        "check_file_exists_and_structure_sim", "check_global_key_play_pause", "check_gnome_favorite_apps",
        "check_image_mirror", "check_image_size", "check_left_panel", "check_libre_locale", "check_list",
        "check_mp3_meta", "check_one_instance_when_started_from_file", "check_page_number_colors",
        "check_pdf_pages", "check_qt_bgcone", "check_qt_max_volume", "check_qt_minimal_view",
        "check_qt_slider_colours", "check_saturation_increase_and_structure_sim",
        "check_slide_orientation_Portrait", "check_structure_sim_resized", "check_text_enlarged",
        "check_thunderbird_prefs", "check_transition", "compare_archive", "compare_conference_city_in_order",
        "compare_config", "compare_image_list", "compare_images", "compare_pptx_files", "compare_terminal_and_txt",
        "compare_text_file", "compare_zip_files", "diff_text_file", "evaluate_presentation_fill_to_rgb_distance",
        "fuzzy_place_math", "is_included_all_json_objects", "is_vlc_playing", "is_vlc_recordings_folder",
        "run_sqlite3")},
    ("check_auto_saving_time", "corrupt"): 'OSWorld returns None for a registry file that does not parse; we score 0',
    **{(m, "none"): _NONE_RESULT for m in (
        "check_accessibility_tree", "check_enabled_experiments", "check_font_size", "check_gnome_favorite_apps",
        "check_history_deleted", "check_left_panel", "check_moved_jpgs", "check_text_enlarged",
        "is_added_to_steam_cart", "is_cookie_deleted", "is_extension_installed", "is_in_list",
        "is_in_vm_clickboard", "is_shortcut_on_desktop", "is_utc_0")},
    **{(m, "wrong_type"): _NONE_RESULT for m in (
        "is_expected_search_query", "is_included_all_json_objects")},
    ("run_sqlite3", "no_row"): "OSWorld takes column 0 of the query's missing first row and raises; we score 0",
    ("run_sqlite3", "no_table"): "OSWorld's query fails on a database without the table and raises; we score 0",
    ("check_libre_locale", "no_setting"): 'OSWorld takes the first locale value of a registry that sets none and raises; we score 0',
    ("is_utc_0", "short"): 'OSWorld reads line 4 of a shorter timedatectl output and raises; we score 0',
    ("check_config_status", "blank_line"): 'OSWorld indexes the first token of a blank gimprc line and raises; we score 0',
    ("is_first_line_centered", "empty"): 'OSWorld reads paragraphs[0] of a document without paragraphs; we score 0',
    ("evaluate_strike_through_last_paragraph", "empty"): 'same, for paragraphs[-1]',
    ("compare_table", "missing_result_sheet"): "the rule's second sheet is a result sheet the agent never made: OSWorld rounds None and raises; we score 0",
}


@dataclass
class Verdict:
    case: Case | GetterCase
    ours: dict
    theirs: dict
    status: str  # "agree" | "explained" | "disagree"
    reason: str = ""


def _label(outcome: dict) -> str:
    if "score" in outcome:
        return f"{outcome['score']:.6g}"
    if outcome.get("none"):
        return "None"
    return "error " + outcome.get("error", "?")[:120]


logging.getLogger("pypdf").setLevel(logging.ERROR)  # the corpus's broken PDFs are expected


def score_ours(case: Case | GetterCase) -> dict:
    from environments.getters import GETTERS
    from environments.metrics import METRICS, Unsupported

    data = json.loads(json.dumps(case.as_json()))  # exactly what OSWorld's side receives
    try:
        if isinstance(case, GetterCase):
            return {"value": GETTERS[case.getter](None, data["config"])}
        value = METRICS[case.metric](*data["args"], **data["kwargs"])
    except Unsupported as e:
        return {"error": f"Unsupported: {e}"}
    except Exception as e:  # noqa: BLE001 - an error outcome is compared like OSWorld's
        return {"error": f"{type(e).__name__}: {e}"[:300]}
    return {"none": True} if value is None else {"score": float(value)}


def start_osworld(corpus: Corpus, workdir: Path) -> tuple[subprocess.Popen, Path]:
    """OSWorld's runner on a copy of the corpus (its metrics write scratch folders beside their
    inputs), started in the background so both sides score at once."""
    copy = workdir / "osworld-corpus"
    shutil.copytree(corpus.root, copy)
    text = json.dumps([dict(c.as_json(), cwd=str(workdir)) for c in corpus.cases], ensure_ascii=False)
    cases_file, out_file = workdir / "cases.json", workdir / "osworld-outcomes.json"
    cases_file.write_text(text.replace(json.dumps(str(corpus.root))[1:-1], json.dumps(str(copy))[1:-1]))
    env = dict(os.environ, PYTHONUTF8="1", PYTHONHASHSEED="0")
    env.pop("PYTHONPATH", None)  # never our project inside OSWorld's interpreter
    runner = Path(__file__).with_name("runner.py")
    with open(workdir / "osworld-runner.log", "w") as log:
        proc = subprocess.Popen([str(venv_python()), str(runner), str(cases_file), str(out_file)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    return proc, out_file


def finish_osworld(proc: subprocess.Popen, out_file: Path, workdir: Path) -> dict[str, dict]:
    try:
        code = proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    if code != 0:
        raise RuntimeError(f"OSWorld runner failed ({code}):\n{(workdir / 'osworld-runner.log').read_text()[-3000:]}")
    return {o["id"]: o for o in json.loads(out_file.read_text())}


def judge(case: Case | GetterCase, ours: dict, theirs: dict) -> Verdict:
    if isinstance(case, GetterCase):
        same = "value" in ours and "value" in theirs and ours["value"] == theirs["value"]
        return Verdict(case, ours, theirs, "agree" if same or ("error" in ours and "error" in theirs) else "disagree")
    name = case.metric
    if "score" in ours and "score" in theirs:
        if abs(ours["score"] - theirs["score"]) <= TOLERANCE:
            return Verdict(case, ours, theirs, "agree")
        return Verdict(case, ours, theirs, "disagree")
    if "score" not in ours and "score" not in theirs:
        return Verdict(case, ours, theirs, "agree")  # neither scores
    if "score" in ours and ours["score"] == 0.0:
        why = OSWORLD_RAISES.get((name, case.kind))
        if why is not None:
            return Verdict(case, ours, theirs, "explained", why)
    return Verdict(case, ours, theirs, "disagree")


def run(corpus: Corpus, workdir: Path) -> list[Verdict]:
    proc, out_file = start_osworld(corpus, workdir)
    try:
        ours = {case.id: score_ours(case) for case in corpus.cases}
    finally:
        theirs = finish_osworld(proc, out_file, workdir)
    return [judge(case, ours[case.id], theirs.get(case.id, {"error": "no outcome"})) for case in corpus.cases]


def report(verdicts: list[Verdict]) -> str:
    per: dict[str, Counter] = defaultdict(Counter)
    for v in verdicts:
        per[getattr(v.case, "metric", None) or "getter:" + v.case.getter][v.status] += 1
    width = max(len(k) for k in per)
    lines = [f"{'metric'.ljust(width)}  cases  agree  explained  disagree"]
    for name in sorted(per):
        c = per[name]
        lines.append(f"{name.ljust(width)}  {sum(c.values()):5d}  {c['agree']:5d}  {c['explained']:9d}  {c['disagree']:8d}")
    total = Counter(v.status for v in verdicts)
    lines.append(f"{'total'.ljust(width)}  {len(verdicts):5d}  {total['agree']:5d}  {total['explained']:9d}  "
                 f"{total['disagree']:8d}")
    bad = [v for v in verdicts if v.status == "disagree"]
    for v in bad[:60]:
        args = getattr(v.case, "args", None) or getattr(v.case, "config", None)
        lines.append(f"DISAGREE {v.case.id} [{v.case.kind}] ours={_label(v.ours)} osworld={_label(v.theirs)} "
                     f"args={json.dumps(args, ensure_ascii=False, default=str)[:300]} "
                     f"kwargs={json.dumps(getattr(v.case, 'kwargs', {}), default=str)[:200]}")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m osworld_differential.compare [WORKDIR]: the full report
    import tempfile

    from osworld_differential.corpus import FAMILIES, build, local_osworld_tasks

    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="qvl-differential-"))
    families = tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else FAMILIES
    result = run(build(work / "corpus", local_osworld_tasks(), families), work)
    print(report(result))
