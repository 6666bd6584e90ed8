"""`qvl-agent eval` end to end: the bundled suite with the oracle and the sanity agents, resume after a
kill, and skipped/error reporting. Everything goes through `agent.cli.main` and is read back from the
files a user would read (summary.json, result.txt)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import main
from environments.suite import BUNDLED_META, load_oracle, load_tasks

REPO = Path(__file__).resolve().parents[2]
BUNDLED = load_tasks()
INFEASIBLE = {t.id for t in BUNDLED if t.evaluator.func == "infeasible"}
BROWSER_DOMAINS = ("forms", "settings")  # short tasks: the kill test runs them twice


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def scores(out: Path) -> dict[str, tuple[str, float]]:
    return {e["id"]: (e["status"], e["score"]) for e in summary(out)["tasks"]}


def write_meta(folder: Path, ids_by_domain: dict[str, list[str]]) -> Path:
    meta = folder / "meta.json"
    meta.write_text(json.dumps(ids_by_domain))
    return meta


def test_bundled_suite_shape():
    meta = json.loads(BUNDLED_META.read_text())
    assert len(BUNDLED) >= 20 and sum(map(len, meta.values())) == len(BUNDLED)
    assert len(INFEASIBLE) >= 2
    assert {"flights", "forms", "settings", "os", "text_editing", "chrome", "libreoffice_calc", "libreoffice_writer",
            "libreoffice_impress", "gimp", "vlc"} <= set(meta)
    for task in BUNDLED:
        replies = load_oracle(task)
        assert all(r.startswith("<tool_call>\n{") and r.endswith("}\n</tool_call>") for r in replies)
        assert '"terminate"' in replies[-1]


@pytest.mark.slow
def test_oracle_scores_one_everywhere_and_rerun_reruns_nothing(tmp_path, capsys):
    out = tmp_path / "oracle"
    t0 = time.time()
    # two workers: most of a task's time is waiting (apps starting, pages settling), which overlaps well
    assert main(["eval", "--agent", "oracle", "--parallel", "2", "--out", str(out)]) == 0
    seconds = time.time() - t0
    got = scores(out)
    assert len(got) == len(BUNDLED)
    assert got == {t.id: ("scored", 1.0) for t in BUNDLED}, got
    for t in BUNDLED:
        task_dir = out / t.domain / t.id
        assert (task_dir / "result.txt").read_text() == "1.0\n"
        assert (task_dir / "traj.jsonl").is_file() and list(task_dir.glob("step_*.png"))
    by_domain = summary(out)["by_domain"]
    assert all(d["mean_score"] == 1.0 and d["passed"] == d["tasks"] for d in by_domain.values())
    printed = capsys.readouterr().out
    assert f"[{len(BUNDLED)}/{len(BUNDLED)}]" in printed and "mean score" in printed
    assert seconds < 420, f"the oracle run took {seconds:.0f} s"

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "summary.json"}
    assert main(["eval", "--agent", "oracle", "--out", str(out)]) == 0
    assert f"{len(BUNDLED)} task(s) already done, 0 to run" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "summary.json"} == stamps
    assert scores(out) == got


@pytest.mark.slow
@pytest.mark.parametrize("agent,parallel", [("done", 2), ("fail", 2)])
def test_sanity_agents(tmp_path, agent, parallel):
    out = tmp_path / agent
    assert main(["eval", "--agent", agent, "--parallel", str(parallel), "--out", str(out)]) == 0
    got = scores(out)
    assert set(got) == {t.id for t in BUNDLED}
    for task_id, (status, score) in got.items():
        assert status == "scored", (task_id, status)
        if agent == "done":  # claiming success changes nothing: every feasible task fails, infeasible too
            assert score == 0.0, task_id
        else:  # FAIL is right exactly on the infeasible tasks
            assert score == (1.0 if task_id in INFEASIBLE else 0.0), task_id


def _browser_task(task_id: str, evaluator: dict) -> dict:
    return {"id": task_id, "instruction": "Open the flights app.", "snapshot": "browser",
            "config": [{"type": "chrome_open_tabs", "parameters": {"urls_to_open": ["{SITE}/flights/"]}}],
            "evaluator": evaluator}


def test_skipped_and_error_tasks_are_reported_never_passed(tmp_path, capsys):
    folder = tmp_path / "tasks" / "odd"
    folder.mkdir(parents=True)
    tasks = {
        "unmirrored-download": {
            "id": "unmirrored-download", "instruction": "Open the report.", "snapshot": "os",
            "config": [{"type": "download", "parameters": {"files": [
                {"url": "https://huggingface.co/datasets/xlangai/ubuntu_osworld_file_cache/resolve/main/os/x/report.pdf",
                 "path": "/home/user/report.pdf"}]}}],
            "evaluator": {"func": "exact_match", "result": {"type": "vm_command_line", "command": "echo yes"},
                          "expected": {"type": "rule", "rules": {"expected": "yes\n"}}}},
        "unknown-metric": _browser_task("unknown-metric", {
            "func": "is_the_moon_full", "result": {"type": "vm_file", "path": "{SITE_STATE}", "dest": "s.json"}}),
        "broken-rule": _browser_task("broken-rule", {  # check_json rules that are not an object: the metric raises
            "func": "check_json", "result": {"type": "vm_file", "path": "{SITE_STATE}", "dest": "s.json"},
            "expected": {"type": "rule", "rules": [{"key": ["bookings"], "method": "eq", "ref": 1}]}}),
        "scored-zero": _browser_task("scored-zero", {
            "func": "check_json", "result": {"type": "vm_file", "path": "{SITE_STATE}", "dest": "s.json"},
            "expected": {"type": "rule", "rules": {"expect": [{"key": ["bookings", 0, "origin"], "method": "eq",
                                                              "ref": "BER"}]}}}),
    }
    for task_id, spec in tasks.items():
        (folder / f"{task_id}.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    assert main(["eval", str(folder.parent), "--agent", "done", "--out", str(out)]) == 1   # a task errored
    entries = {e["id"]: e for e in summary(out)["tasks"]}
    assert entries["unmirrored-download"]["status"] == "skipped"
    assert "download not available offline" in entries["unmirrored-download"]["reason"]
    assert entries["unknown-metric"]["status"] == "skipped"
    assert "unsupported" in entries["unknown-metric"]["reason"] and "is_the_moon_full" in entries["unknown-metric"]["reason"]
    assert entries["broken-rule"]["status"] == "error" and "check_json" in entries["broken-rule"]["reason"]
    assert (entries["scored-zero"]["status"], entries["scored-zero"]["score"]) == ("scored", 0.0)
    for task_id, e in entries.items():
        assert (out / "odd" / task_id / "result.txt").exists() == (e["status"] == "scored")
    odd = summary(out)["by_domain"]["odd"]
    assert (odd["tasks"], odd["scored"], odd["skipped"], odd["error"], odd["mean_score"]) == (4, 1, 2, 1, 0.0)

    # resuming keeps the scored task and tries the others again (a mirror or a fix may have come since)
    capsys.readouterr()
    assert main(["eval", str(folder.parent), "--agent", "done", "--out", str(out)]) == 1
    assert "1 task(s) already done, 3 to run" in capsys.readouterr().out
    assert {e["id"]: e["status"] for e in summary(out)["tasks"]} == {i: e["status"] for i, e in entries.items()}


def test_killed_run_keeps_finished_tasks(tmp_path):
    ids = {d: [t.id for t in BUNDLED if t.domain == d] for d in BROWSER_DOMAINS}
    meta = write_meta(tmp_path, ids)
    n = sum(map(len, ids.values()))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "agent.cli", "eval", str(meta), "--examples", str(BUNDLED_META.parent),
           "--agent", "oracle", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            if (out / "summary.json").exists() and len(summary(out)["tasks"]) >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the eval run did not finish two tasks")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    first = {e["id"]: e for e in summary(out)["tasks"]}
    assert 2 <= len(first) < n
    kept = {i: (out / e["domain"] / i / "traj.jsonl").stat().st_mtime_ns for i, e in first.items()}

    assert main(cmd[3:]) == 0
    final = {e["id"]: e for e in summary(out)["tasks"]}
    assert len(final) == n and all(e["status"] == "scored" and e["score"] == 1.0 for e in final.values())
    assert {i: (out / first[i]["domain"] / i / "traj.jsonl").stat().st_mtime_ns for i in first} == kept


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.json"), "--agent", "done", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no task file, folder or meta file at") and "\n" not in err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["eval", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["eval", "--agent", "openai", "--out", str(tmp_path / "o")]) == 1
    assert "needs --base-url and --model" in capsys.readouterr().err
    out = tmp_path / "o2"
    one = next(t for t in BUNDLED if t.id == "settings-two-factor-infeasible")
    assert main(["eval", str(one.path), "--agent", "fail", "--out", str(out)]) == 0
    assert scores(out) == {one.id: ("scored", 1.0)}
    assert main(["eval", str(one.path), "--agent", "done", "--out", str(out)]) == 1
    assert "resume it with the same --agent" in capsys.readouterr().err


def test_missing_model_stops_the_run_with_one_line_and_missing_oracle_skips(tmp_path, capsys):
    one = next(t for t in BUNDLED if t.id == "settings-two-factor-infeasible")
    out = tmp_path / "emb"
    assert main(["eval", str(one.path), "--agent", "embedded", "--model", str(tmp_path / "no-such-model"),
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'no-such-model'}: no such model folder"   # refused before any worker starts
    assert not out.exists()

    lone = tmp_path / "lone" / "t.json"
    lone.parent.mkdir()
    lone.write_text(one.path.read_text().replace(one.id, "t"))
    assert main(["eval", str(lone), "--agent", "oracle", "--out", str(tmp_path / "o")]) == 3   # nothing scored
    [entry] = summary(tmp_path / "o")["tasks"]
    assert entry["status"] == "skipped" and "has no oracle trajectory" in entry["reason"]


def test_model_that_fails_to_load_in_the_workers_is_one_line_and_leaves_no_summary(tmp_path):
    """A folder that exists but holds no loadable checkpoint: the workers find out; the parent prints one line,
    lets them exit (no traceback from a worker killed while exiting) and writes no empty summary.json."""
    one = next(t for t in BUNDLED if t.id == "settings-two-factor-infeasible")
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "agent.cli", "eval", str(one.path), "--agent", "embedded",
                           "--model", str(broken), "--parallel", "2", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: agent embedded: ") and "broken-model" in err[0], done.stderr
    assert not (out / "summary.json").exists()


def test_exit_codes_tell_scored_errored_and_all_skipped_apart(tmp_path):
    """0: scored without errors (above); 1: some task errored (test_skipped_and_error_tasks...); 3: all skipped."""
    folder = tmp_path / "tasks" / "odd"
    folder.mkdir(parents=True)
    (folder / "moon.json").write_text(json.dumps(_browser_task("moon", {
        "func": "is_the_moon_full", "result": {"type": "vm_file", "path": "{SITE_STATE}", "dest": "s.json"}})))
    assert main(["eval", str(folder), "--agent", "done", "--out", str(tmp_path / "out")]) == 3
    assert summary(tmp_path / "out")["tasks"][0]["status"] == "skipped"


def test_step_budget_is_the_flag_else_the_task_file_else_fifty():
    from agent.loop import DEFAULT_MAX_STEPS
    from agent.policies import ScriptedPolicy
    from environments.suite import EvalSettings, step_budget
    from environments.tasks import Task

    flights = next(t for t in BUNDLED if t.domain == "flights")
    oracle = ScriptedPolicy(load_oracle(flights))
    assert DEFAULT_MAX_STEPS == 50 and 19 <= len(oracle.responses) < DEFAULT_MAX_STEPS   # the default fits the suite
    own = Task.model_validate({**flights.model_dump(mode="json"), "max_steps": 7})
    assert step_budget(EvalSettings(agent="done"), flights, None) == DEFAULT_MAX_STEPS
    assert step_budget(EvalSettings(agent="done"), own, None) == 7
    assert step_budget(EvalSettings(agent="done", max_steps=12), own, None) == 12
    assert step_budget(EvalSettings(agent="oracle", max_steps=3), flights, oracle) == len(oracle.responses)
