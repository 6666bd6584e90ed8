"""`qvl-agent eval --check`: what would happen to each task, without starting anything.

For every task file: it would *run*, be *skipped* (the reason the environment would give at reset:
the offline checks of environments.setup and the evaluator's, see evaluate.start_task), or end in an
*error* (the file does not load, a setup step or metric gets parameters it does not take, or the
desktop cannot start here). The checks read the task file, the offline mirror and what is installed;
no sandbox, display or browser is started and no task command runs.
"""

from __future__ import annotations

import inspect
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from environments.evaluate import evaluation_blocker, evaluator_problem
from environments.sandbox import BIN_DIR, PATH, SHIMS_DIR
from environments.setup import STEPS, offline_blocker
from environments.tasks import Task, TaskRef, load_ref


@dataclass
class TaskCheck:
    domain: str
    id: str
    status: str  # "run" | "skip" | "error"
    reason: str = ""
    evaluator_implemented: bool = False  # metrics, getters and rules all implemented (coverage)


class _Plan:
    """What the offline checks read from a `Controller`, for a sandbox that is not started: the mirror,
    offline mode, the task id (mirror lookups) and `which` over the sandbox's PATH (shims included)."""

    def __init__(self, mirror: Path | None, online: bool = False) -> None:
        self.mirror, self.online, self.task_id = mirror, online, ""
        self._shims = {p.name for p in SHIMS_DIR.iterdir()}
        self._path = ":".join(d for d in PATH.split(":") if d != BIN_DIR)

    def which(self, name: str) -> str | None:
        if "/" not in name and name in self._shims:
            return f"{BIN_DIR}/{name}"
        return shutil.which(name, path=self._path)


def _bad_parameters(task: Task) -> str | None:
    """A setup step or metric called with parameters it does not take (a TypeError when it runs)."""
    steps = [("config", i, s) for i, s in enumerate(task.config)]
    steps += [("postconfig", i, s) for i, s in enumerate(task.evaluator.postconfig)]
    for phase, i, step in steps:
        fn = STEPS.get(step.type)
        if fn is not None:
            try:
                inspect.signature(fn).bind(None, **step.parameters)
            except TypeError as e:
                return f"{phase}[{i}] {step.type}: bad parameters ({e})"
    if task.evaluator.func in ("infeasible", "", []):
        return None
    from environments.metrics import METRICS

    for func, result, expected, options in task.evaluator.metrics():
        args = (None, None) if expected is not None else (None,)
        try:
            inspect.signature(METRICS[func]).bind(*args, **options)
        except TypeError as e:
            return f"metric {func}: bad options ({e})"
    return None


def _desktop_problem() -> str | None:
    """Why no desktop task can start on this machine (no bubblewrap), or None."""
    from environments.sandbox import check_bwrap

    try:
        check_bwrap()
    except Exception as e:  # noqa: BLE001 - whatever stops the sandbox is this machine's problem
        return str(e)
    return None


class _SitesStandIn:
    """Where the bundled sites would be served: a worker starts them on a loopback port at run time."""

    url = "http://127.0.0.1:0"
    state_file = Path("/tmp/qvl-sites-state.json")


def check_task(task: Task, plan: _Plan, desktop_problem: str | None) -> TaskCheck:
    from environments.browser import runs_in_browser
    from environments.sites import fill_site_placeholders, uses_sites

    if uses_sites(task.model_dump(mode="json")):
        filled = fill_site_placeholders(task.model_dump(mode="json"), _SitesStandIn)
        task = Task.model_validate(filled).model_copy(update={"domain": task.domain, "path": task.path})
    entry = TaskCheck(task.domain or "", task.id, "run", evaluator_implemented=evaluator_problem(task) is None)
    plan.task_id = task.id
    skip = offline_blocker(task, plan) or evaluation_blocker(task, plan)
    if skip is not None:
        entry.status, entry.reason = "skip", skip
        return entry
    problem = _bad_parameters(task) or (None if runs_in_browser(task) else desktop_problem)
    if problem is not None:
        entry.status, entry.reason = "error", problem
    return entry


def check_refs(refs: list[TaskRef], mirror: Path | None = None) -> list[TaskCheck]:
    plan, desktop = _Plan(mirror), _desktop_problem()
    out = []
    for ref in refs:
        path, domain, task_id = ref
        try:
            task = load_ref(ref)
        except (OSError, ValueError) as e:
            out.append(TaskCheck(domain or path.parent.name, task_id or path.stem, "error", str(e)))
            continue
        out.append(check_task(task, plan, desktop))
    return out


def format_checks(checks: list[TaskCheck]) -> str:
    """One line per task that would not run, then a table per domain (with the evaluator coverage)."""
    lines = [f"{c.domain}/{c.id}: {c.status}: {c.reason}" for c in checks if c.status != "run"]
    per: dict[str, Counter] = {}
    for c in checks:
        for key in (c.domain, "all"):
            counts = per.setdefault(key, Counter())
            counts["tasks"] += 1
            counts[c.status] += 1
            counts["evaluator"] += c.evaluator_implemented
    header = ("domain", "tasks", "run", "skip", "error", "evaluator implemented")
    rows = [header] + [(d, *(str(per[d][k]) for k in ("tasks", "run", "skip", "error")),
                        f"{per[d]['evaluator']}/{per[d]['tasks']}")
                       for d in sorted(k for k in per if k != "all") + ["all"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    table = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    table.insert(1, "-" * len(table[0]))
    table.insert(len(table) - 1, "-" * len(table[0]))
    return "\n".join(lines + ([""] if lines else []) + table)
