"""Run directories: ``run.json`` header, ``traj.jsonl`` (one line per model turn), screenshots, result.

``traj.jsonl`` lines are a superset of OSWorld's (step_num, action_timestamp, action, response, reward,
done, info, screenshot_file). Every line is flushed and fsynced as it is written and every screenshot is
saved before its line, so a killed run leaves a readable directory (a torn last line is ignored on load).

Layout::

    RUN_DIR/run.json            RunHeader
    RUN_DIR/traj.jsonl          StepRecord per line
    RUN_DIR/step_<n>_<ts>.png   the screenshot the model saw at step n
    RUN_DIR/result.json         the episode result
    RUN_DIR/report.html         the report (agent.report), with report_files/ (annotated JPEG screenshots)
    RUN_DIR/eval.json           eval tasks only: the evaluator's answer
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from agent.actions import Action

TRAJ_FILE = "traj.jsonl"
HEADER_FILE = "run.json"
RESULT_FILE = "result.json"
REPORT_FILE = "report.html"
EVAL_FILE = "eval.json"  # eval task folders: the evaluator's full answer (per-metric scores, getter outputs, reasons)


class RunHeader(BaseModel):
    model_config = ConfigDict(extra="allow")

    instruction: str
    env_kind: Literal["browser", "desktop", "custom"] = "custom"
    start_url: str | None = None
    bundled_sites_base: str | None = None  # base URL of environments.sites when start_url points there
    display: str | None = None
    profile: str = "qwen"
    coord_divisor: float = 1000
    history_images: int = 4
    max_steps: int | None = None  # the episode's budget (None: not recorded)
    model: str | None = None
    policy: str | None = None  # embedded | openai | scripted
    dry_run: bool = False
    lenient_parse: bool = False
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


class Latency(BaseModel):
    policy: float | None = None
    parse: float | None = None
    execute: float | None = None
    observe: float | None = None


class StepRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    # OSWorld's keys
    step_num: int
    action_timestamp: str
    action: dict | None  # the executed call's arguments (None when nothing was executed)
    response: str  # the model's reply (raw)
    reward: float = 0.0
    done: bool = False
    info: dict = Field(default_factory=dict)
    screenshot_file: str | None = None  # the screenshot the model saw
    # ours
    raw_response: str
    thought: str = ""
    action_line: str | None = None
    parsed_action: Action | None = None
    parse_error: str | None = None
    target_px: tuple[float, float] | None = None  # in pixels of screenshot_file
    screen_size: tuple[int, int] | None = None
    executed: bool = False
    outcome: dict | None = None
    status: str = "ok"  # ok | parse_error | declined | dry_run | error
    call_index: int = 0  # which tool call of the reply this line is (one line per executed call, as OSWorld)
    calls_in_reply: int = 0  # readable tool calls in the reply
    finish_reason: str | None = None  # why the reply ended: stop | length (never executed) | None (unknown)
    latency: Latency = Field(default_factory=Latency)
    tokens_in: int | None = None
    tokens_out: int | None = None
    visual_tokens: int | None = None
    annotated_file: str | None = None  # dry run: the screenshot with the intended action drawn


def timestamp() -> str:
    return datetime.now().strftime("%Y%m%d@%H%M%S%f")


class TrajectoryWriter:
    """Appends a run to ``out_dir`` as it happens."""

    def __init__(self, out_dir: Path | str):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if (self.dir / TRAJ_FILE).exists() and (self.dir / TRAJ_FILE).stat().st_size:
            raise FileExistsError(f"{self.dir} already holds a run ({TRAJ_FILE}); choose another --out directory")

    def write_header(self, header: RunHeader) -> None:
        _atomic_write(self.dir / HEADER_FILE, header.model_dump_json(indent=2))

    def save_screenshot(self, step: int, image: Image.Image, suffix: str = "") -> str:
        name = f"step_{step}_{timestamp()}{suffix}.png"
        image.save(self.dir / name)
        return name

    def append(self, record: StepRecord) -> None:
        line = record.model_dump_json() + "\n"
        with open(self.dir / TRAJ_FILE, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def write_result(self, result: BaseModel) -> None:
        _atomic_write(self.dir / RESULT_FILE, result.model_dump_json(indent=2))


def require_new_run_dir(path: Path | str) -> Path:
    """`path` when it does not exist or is an empty folder, else FileExistsError. Commands call this before they
    start anything (a sites server resets its state file inside the run folder), so a refused --out is untouched."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        what = "a run" if (path / TRAJ_FILE).exists() else ("a file" if not path.is_dir() else "files")
        raise FileExistsError(f"--out {path} already holds {what}; nothing was changed there, choose another folder")
    return path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_header(run_dir: Path | str) -> RunHeader:
    path = Path(run_dir) / HEADER_FILE
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {HEADER_FILE})")
    return RunHeader.model_validate_json(path.read_text(encoding="utf-8"))


def load_steps(path: Path | str) -> list[StepRecord]:
    """Records of a run dir or a traj.jsonl file; a torn last line (killed run) is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / TRAJ_FILE
    if not path.exists():
        raise FileNotFoundError(f"no trajectory at {path}")
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}:{i + 1} is not valid JSON") from None
        if "step_num" not in data:  # OSWorld's {"Error": ...} lines
            continue
        records.append(StepRecord.model_validate(data))
    return records


def load_result(run_dir: Path | str) -> dict | None:
    path = Path(run_dir) / RESULT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def elapsed(t0: float) -> float:
    return round(time.perf_counter() - t0, 4)
