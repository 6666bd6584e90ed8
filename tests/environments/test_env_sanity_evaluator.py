"""Sanity of the evaluators over every task file at hand: an agent that did nothing never scores.

FAIL (terminate failure) must score exactly 1 on infeasible tasks and 0 on the rest. DONE (terminate
success at once) must score 0 everywhere. `qvl-agent eval --agent done/fail` checks this with the real
apps on the tasks that can run here; this test covers every task at the evaluator level, including
the ones whose files or sites are not available offline: each task's evaluator is scored against an
untouched task sandbox (a fresh /home/user with the desktop's presets) in which the task's setup commands
(`execute`/`command` steps) have run; downloads, apps and web pages are absent, so a result file
the agent should have produced is missing, and a reference file that cannot be had offline is a
path that does not exist. Postconfig is not run (it drives the apps).

Tasks: the real OSWorld files in tests/environments/osworld, the bundled suite, and OSWorld's
test_all.json from a local checkout when there is one ($QVL_OSWORLD_DIR, ~/.cache/qvl-agent/osworld).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from agent.actions import Action
from environments import getters
from environments.controller import Controller
from environments.desktop import HOME_SKELETON, PRESET_HOME
from environments.evaluate import evaluator_problem, score_actions
from environments.sandbox import Sandbox
from environments.setup import SetupError, TaskSkipped, run_steps
from environments.suite import BUNDLED_META, load_tasks
from environments.tasks import SetupStep, Task

OSWORLD_FIXTURES = Path(__file__).parent / "osworld"
FAIL = Action(action="terminate", status="failure")
DONE = Action(action="terminate", status="success")
SETUP_TIMEOUT_S = 20  # a setup command that waits longer waits for an app that is not there

# Tasks an agent that did nothing passes in OSWorld itself (its evaluator's verdict, reproduced here).
OSWORLD_PASSES_UNTOUCHED: dict[str, str] = {}


def _all_tasks() -> list[Task]:
    tasks = load_tasks(OSWORLD_FIXTURES) + load_tasks(BUNDLED_META)
    base = Path(os.environ.get("QVL_OSWORLD_DIR", Path.home() / ".cache" / "qvl-agent" / "osworld"))
    meta = base / "evaluation_examples" / "test_all.json"
    if meta.is_file():
        tasks += load_tasks(meta)
    seen, out = set(), []
    for t in tasks:
        if (t.domain, t.id) not in seen:
            seen.add((t.domain, t.id))
            out.append(t)
    return out


class _QuickController(Controller):
    def run(self, command, shell=False, timeout=SETUP_TIMEOUT_S, stdin=None):
        return super().run(command, shell=shell, timeout=min(timeout, SETUP_TIMEOUT_S), stdin=stdin)


def _untouched(tmp_path: Path):
    sandbox = Sandbox(tmp_path / "sandbox")
    controller = _QuickController(sandbox=sandbox, cache_dir=tmp_path / "cache", display=":none",
                                  screen_size=(1920, 1080), chrome_port=1, mirror=None)
    return sandbox, controller


def _reset(sandbox: Sandbox, controller: Controller, task: Task) -> None:
    """The desktop's reset without its display and apps: an empty home with the presets and the
    skeleton folders, an empty /tmp, then the task's setup commands."""
    sandbox.kill()
    for folder in (sandbox.home, sandbox.tmp):
        for child in folder.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    shutil.copytree(PRESET_HOME, sandbox.home, dirs_exist_ok=True)
    for d in HOME_SKELETON:
        (sandbox.home / d).mkdir(exist_ok=True)
    controller.task_id = task.id
    commands = [SetupStep.model_validate({**s.model_dump(), "parameters": {**s.parameters, "until": None}})
                for s in task.config if s.type in ("execute", "command")]
    try:
        run_steps(commands, controller, phase="config")
    except (SetupError, TaskSkipped):
        pass  # OSWorld ignores a command's failure; one that cannot run leaves the state as it is


@pytest.mark.slow
def test_fail_and_done_agents_at_the_evaluator_level(tmp_path, monkeypatch):
    missing_gold = str(tmp_path / "reference-not-available-offline")

    def cloud_file_offline(c, cfg):  # what the evaluator sees when the reference file cannot be had
        return missing_gold if not cfg.get("multi") else [missing_gold for _ in cfg.get("gives", [0])]

    monkeypatch.setitem(getters.GETTERS, "cloud_file", cloud_file_offline)
    monkeypatch.setitem(getters.GETTERS, "open_tabs_info", lambda c, cfg: [])  # OSWorld's value with no browser

    tasks = _all_tasks()
    fail = Counter()
    done: Counter = Counter()
    positives = []
    unscored = Counter()
    sandbox, controller = _untouched(tmp_path)
    try:
        for task in tasks:
            infeasible = task.evaluator.func == "infeasible"
            r = score_actions(task, controller, [FAIL])
            assert (r.status, r.score) == ("scored", 1.0 if infeasible else 0.0), (task.domain, task.id, r)
            fail["infeasible" if infeasible else "feasible"] += 1
            if infeasible:
                assert score_actions(task, controller, [DONE]).score == 0.0
                done["scored 0"] += 1
                continue
            if evaluator_problem(task) is not None:
                done["evaluator not implemented"] += 1
                continue
            _reset(sandbox, controller, task)
            r = score_actions(task, controller, [DONE])
            if r.status == "scored" and r.score > 0 and task.id not in OSWORLD_PASSES_UNTOUCHED:
                positives.append(f"{task.domain}/{task.id}: {r.score} {r.reason} {r.details}")
            done[f"{r.status} {'0' if r.score == 0 else '>0'}" if r.status == "scored" else r.status] += 1
            if r.status != "scored":
                unscored[f"{r.status}: {r.reason[:90]}"] += 1
    finally:
        sandbox.close()
    print(f"\n{len(tasks)} tasks; FAIL agent: {dict(fail)} (1 on every infeasible task, 0 on every other); "
          f"DONE agent: {dict(done)}")
    for reason, n in unscored.most_common():
        print(f"  {n:3d}  {reason}")
    assert not positives, "\n".join(positives)
