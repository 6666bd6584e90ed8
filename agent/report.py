"""Drawing an action on a screenshot, and the self-contained HTML report of a run directory."""

from __future__ import annotations

import html
import json
from pathlib import Path

from PIL import Image, ImageDraw

from agent.actions import Action
from agent.trajectory import EVAL_FILE, REPORT_FILE, TRAJ_FILE, StepRecord, load_header, load_result, load_steps
from tools.screenshots import draw_marker, label_font


def annotate(image: Image.Image, action: Action | None, target: tuple[float, float] | None,
             label: str | None = None) -> Image.Image:
    """A copy of ``image`` with the marker at ``target`` and a label describing the action."""
    text = label if label is not None else (describe(action) if action else "")
    if target is not None:
        return draw_marker(image, target, text or None)
    out = image.convert("RGB")
    if text:  # no point to mark (key, type, ...): the label goes in the top-left corner
        draw = ImageDraw.Draw(out)
        font = label_font(max(12, min(out.size) // 45))
        box = draw.textbbox((8, 8), text, font=font)
        draw.rectangle([box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3], fill=(0, 0, 0))
        draw.text((8, 8), text, fill=(255, 255, 255), font=font)
    return out


def describe(action: Action) -> str:
    """Short human text of an action: ``left_click (500, 300)``, ``type "hello"``, ``key ctrl+c``."""
    a = action.action
    if a == "type" or a == "answer":
        text = action.text or ""
        return f"{a} {json.dumps(text[:60] + ('…' if len(text) > 60 else ''), ensure_ascii=False)}"
    if a == "key":
        return "key " + "+".join(action.keys or [])
    if a in ("scroll", "hscroll"):
        return f"{a} {action.pixels:g}" + (f" at ({action.coordinate[0]:g}, {action.coordinate[1]:g})"
                                          if action.coordinate else "")
    if a == "wait":
        return f"wait {action.time:g}s"
    if a == "terminate":
        return f"terminate {action.status}"
    if action.coordinate is not None:
        return f"{a} ({action.coordinate[0]:g}, {action.coordinate[1]:g})"
    return a


REPORT_IMAGES = "report_files"   # annotated JPEG copies of the screenshots, beside report.html
THUMB_WIDTH = 960


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:20px} .meta td{padding:2px 12px 2px 0;vertical-align:top}
.index{columns:3;font-size:13px;margin:12px 0;padding-left:20px}
.step{border-top:1px solid #ccc;padding:16px 0;display:flex;gap:20px}
.step img{max-width:760px;width:100%;border:1px solid #999}
.side{flex:1;min-width:320px} pre{white-space:pre-wrap;background:#f5f5f5;padding:8px;border-radius:4px}
.bad{color:#b00020} .ok{color:#00796b} .k{color:#666}
"""


def _anchor(rec: StepRecord) -> str:
    """One name per trajectory line: a reply with several calls has several lines with the same step_num."""
    return f"step_{rec.step_num}" + (f"_{rec.call_index + 1}" if rec.call_index else "")


def _thumbnail(run_dir: Path, rec: StepRecord) -> str:
    """The step's screenshot with its action drawn, as a JPEG in report_files/ linking to the full PNG."""
    shot = run_dir / rec.screenshot_file if rec.screenshot_file else None
    if shot is None or not shot.exists():
        return "<div class='k'>(no screenshot)</div>"
    try:
        with Image.open(shot) as im:
            marked = annotate(im, rec.parsed_action, rec.target_px)
    except (OSError, SyntaxError, ValueError):   # torn by a kill while it was being written
        return "<div class='k'>(screenshot unreadable)</div>"
    if marked.width > THUMB_WIDTH:
        marked = marked.resize((THUMB_WIDTH, round(marked.height * THUMB_WIDTH / marked.width)), Image.LANCZOS)
    name = f"{REPORT_IMAGES}/{_anchor(rec)}.jpg"
    (run_dir / REPORT_IMAGES).mkdir(exist_ok=True)
    marked.convert("RGB").save(run_dir / name, "JPEG", quality=80)
    q = html.escape(rec.screenshot_file, quote=True)
    return f"<a href='{q}'><img alt='step {rec.step_num}' src='{name}' loading='lazy'></a>"


def _evaluation(run_dir: Path) -> str | None:
    """The evaluator's verdict when the run is an eval task (eval.json beside traj.jsonl)."""
    path = run_dir / EVAL_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return "(eval.json unreadable)"
    if data.get("status") == "scored":
        text = f"score {data.get('score', 0):g}"
    else:
        text = str(data.get("status"))
    return text + (f" — {data['reason']}" if data.get("reason") else "")


def write_report(run_dir: Path | str) -> Path:
    """Render ``RUN_DIR/report.html`` with JPEG copies of the screenshots in ``report_files/``; it opens in any
    browser straight from the folder and stays small however long the run."""
    run_dir = Path(run_dir)
    header = load_header(run_dir)
    steps = load_steps(run_dir) if (run_dir / TRAJ_FILE).exists() else []
    result = load_result(run_dir)
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>qvl-agent run: {esc(header.instruction)}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>{esc(header.instruction)}</h1><table class='meta'>"]
    meta = {
        "environment": header.env_kind + (f" — {header.start_url}" if header.start_url else ""),
        "policy": f"{header.policy or '?'} {header.model or ''}", "prompt profile": header.profile,
        "coordinate divisor": f"{header.coord_divisor:g}", "started": header.created,
    }
    if result:
        meta["result"] = f"{result.get('status')} after {result.get('steps')} steps" + (
            f" — answer: {result['answer']}" if result.get("answer") else "") + (
            f" — error: {result['error']}" if result.get("error") else "")
    else:
        meta["result"] = "none recorded (the run was killed, or is still going)"
    evaluation = _evaluation(run_dir)
    if evaluation is not None:
        meta["evaluation"] = evaluation
    parts += [f"<tr><td class='k'>{esc(k)}</td><td>{esc(str(v))}</td></tr>" for k, v in meta.items()]
    parts.append("</table>")
    if steps:
        parts.append("<ol class='index'>" + "".join(
            f"<li><a href='#{_anchor(rec)}'>{esc(describe(rec.parsed_action)) if rec.parsed_action else '—'}"
            f"</a>{'' if rec.status == 'ok' else f' <span class=bad>{esc(rec.status)}</span>'}</li>"
            for rec in steps) + "</ol>")
    for rec in steps:
        status_cls = "ok" if rec.status == "ok" else "bad"
        lat = rec.latency
        lat_txt = ", ".join(f"{k} {v:.2f}s" for k, v in lat.model_dump().items() if v is not None)
        tokens = []
        if rec.tokens_in is not None:
            tokens.append(f"{rec.tokens_in} in / {rec.tokens_out} out tokens")
        if rec.visual_tokens is not None:
            tokens.append(f"{rec.visual_tokens} visual tokens per screenshot")
        lines = [
            f"<h3>Step {rec.step_num} <span class='{status_cls}'>{esc(rec.status)}</span></h3>",
            f"<div><b>action:</b> {esc(describe(rec.parsed_action)) if rec.parsed_action else '—'}"
            + (f" → pixel ({rec.target_px[0]:.0f}, {rec.target_px[1]:.0f})" if rec.target_px else "") + "</div>",
        ]
        if rec.parse_error:
            lines.append(f"<div class='bad'>parse error: {esc(rec.parse_error)}</div>")
        if rec.info.get("error"):
            lines.append(f"<div class='bad'>error: {esc(str(rec.info['error']))}</div>")
        lines += [f"<div class='k'>{esc(lat_txt)}</div>", f"<div class='k'>{esc('; '.join(tokens))}</div>",
                  f"<b>model output</b><pre>{esc(rec.raw_response)}</pre>"]
        parts.append(f"<div class='step' id='{_anchor(rec)}'><div>{_thumbnail(run_dir, rec)}</div>"
                     f"<div class='side'>{''.join(lines)}</div></div>")
    parts.append("</body></html>")
    out = run_dir / REPORT_FILE
    out.write_text("".join(parts), encoding="utf-8")
    return out
