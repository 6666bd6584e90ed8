"""`qvl-agent eval --check`: each task's fate (run / skip and why / error) without starting anything."""

from __future__ import annotations

import json
from pathlib import Path

from agent.cli import main
from environments.check import check_refs
from environments.suite import task_refs

OSWORLD = Path(__file__).parent / "osworld"


def write_task(folder: Path, task_id: str, evaluator: dict, config: list | None = None, domain: str = "d") -> Path:
    path = folder / domain / f"{task_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"id": task_id, "instruction": "x", "config": config or [], "evaluator": evaluator}))
    return path


def rule(value) -> dict:
    return {"type": "rule", "rules": value}


def test_real_osworld_tasks_run_or_skip_with_the_reason(tmp_path):
    checks = {c.id: c for c in check_refs(task_refs(OSWORLD))}
    assert len(checks) == 12
    assert checks["7688b85f-87a4-4e4a-b2f8-f3d6c3f29b82"].status == "run"
    assert checks["a462a795-fdc7-4b23-b689-e8b6df786b78"].status == "run"  # infeasible
    drive = checks["23393935-50c7-4a86-aeea-2b78fd089c5c"]
    assert drive.status == "skip" and drive.reason.startswith("download not available offline: https://drive.")
    live = checks["06fe7178-4491-4589-810f-2e2bc9502122"]
    assert (live.status, live.reason) == ("skip", "needs the internet: chrome_open_tabs opens https://www.lonelyplanet.com")
    assert all(c.evaluator_implemented for c in checks.values())


def test_unknown_evaluator_parts_bad_parameters_and_broken_files(tmp_path):
    write_task(tmp_path, "audio", {"func": "compare_audios", "result": rule(1), "expected": rule(1)})
    write_task(tmp_path, "magic", {"func": "no_such_metric", "result": rule(1)})
    write_task(tmp_path, "drive", {"func": "exact_match", "result": {"type": "googledrive_file"}, "expected": rule({})})
    write_task(tmp_path, "rule", {"func": "compare_table", "result": rule(1), "expected": rule(1),
                                  "options": {"rules": [{"type": "sheet_magic"}]}})
    write_task(tmp_path, "bad-step", {"func": "exact_match", "result": rule(1), "expected": rule({"expected": 1})},
               config=[{"type": "sleep", "parameters": {"secs": 1}}])
    write_task(tmp_path, "bad-options", {"func": "exact_match", "result": rule(1), "expected": rule({"expected": 1}),
                                         "options": {"ignore_case": True}})
    write_task(tmp_path, "fine", {"func": "exact_match", "result": rule(1), "expected": rule({"expected": 1})})
    (tmp_path / "d" / "broken.json").write_text("{nope")
    checks = {c.id: c for c in check_refs(task_refs(tmp_path))}
    assert checks["fine"].status == "run" and checks["fine"].evaluator_implemented
    assert checks["audio"].status == "skip" and "metric 'compare_audios' (needs librosa" in checks["audio"].reason
    assert not checks["audio"].evaluator_implemented
    assert checks["magic"].reason == "unsupported: metric 'no_such_metric'"
    assert "getter 'googledrive_file' (needs a Google account" in checks["drive"].reason
    assert checks["rule"].reason == "unsupported: compare_table rule 'sheet_magic'"
    assert checks["bad-step"].status == "error" and checks["bad-step"].reason.startswith("config[0] sleep: bad parameters")
    assert checks["bad-options"].status == "error" and "metric exact_match: bad options" in checks["bad-options"].reason
    assert checks["broken"].status == "error" and "not valid JSON" in checks["broken"].reason


def test_meta_file_with_a_missing_task_file_and_the_cli_table(tmp_path, capsys):
    write_task(tmp_path / "examples", "a", {"func": "exact_match", "result": rule(1), "expected": rule({"expected": 1})},
               domain="os")
    (tmp_path / "test_all.json").write_text(json.dumps({"os": ["a", "gone"]}))
    assert main(["eval", "--check", str(tmp_path / "test_all.json")]) == 1  # a task that cannot load is an error
    out = capsys.readouterr().out
    assert "os/gone: error: task file not found" in out
    assert out.splitlines()[-1].split() == ["all", "2", "1", "0", "1", "1/2"]
    (tmp_path / "test_all.json").write_text(json.dumps({"os": ["a"]}))
    assert main(["eval", "--check", str(tmp_path / "test_all.json")]) == 0
