"""Score a task exactly as OSWorld's `DesktopEnv.evaluate` does (docs/osworld.md §1.3).

1. run `postconfig`; 2. `infeasible`: 1 iff the last action was FAIL; 3. otherwise a last FAIL
scores 0; 4. one metric: a getter raising FileNotFoundError scores 0; 5. a metric list combines
with `conj` ("and": any 0 → 0, else mean; "or": any 1 → 1, else max).

Where OSWorld would crash or silently score, this reports instead: an exception inside a getter
or metric is status "error" (never a pass), an unknown metric/getter or a case a metric does not
implement is "skipped" with reason "unsupported: ...", and files that cannot be had offline are
"skipped" with the reason.

`as_task`, `start_task`, `observation_extra` and `evaluate_environment` are the parts of `reset` and
`evaluate` that every environment shares.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agent.actions import Action
from environments.base import EvalResult
from environments.controller import Controller
from environments.getters import GETTERS
from environments.getters import NOT_IMPLEMENTED as GETTERS_NOT_IMPLEMENTED
from environments.metrics import METRICS, Unsupported
from environments.metrics import NOT_IMPLEMENTED as METRICS_NOT_IMPLEMENTED
from environments.metrics.table import TABLE_RULE_TYPES
from environments.setup import SetupError, TaskSkipped, locate, offline_blocker, run_steps
from environments.tasks import GetterSpec, Task, load_task

DETAIL_CHARS = 2000  # getter outputs kept in EvalResult.details, truncated


def is_fail(action: Any) -> bool:
    """OSWorld's FAIL: our terminate(status=failure), the string "FAIL" or {"action_type": "FAIL"}."""
    if isinstance(action, Action):
        return action.action == "terminate" and action.status == "failure"
    if isinstance(action, str):
        return action.strip() == "FAIL"
    if isinstance(action, dict):
        return action.get("action_type") == "FAIL"
    return False


def _unsupported(kind: str, name: str, why: str | None) -> str:
    return f"unsupported: {kind} {name!r}" + (f" ({why})" if why else "")


def evaluator_problem(task: Task) -> str | None:
    """What in the task's evaluator this harness does not implement (metric, getter, compare_table
    rule), read from the task file alone; None if everything is implemented."""
    ev = task.evaluator
    if ev.func == "" or ev.func == []:
        return "unsupported: the task has no evaluator (func is empty)"
    if ev.func == "infeasible":
        return None
    for func, result, expected, options in ev.metrics():
        if func not in METRICS:
            return _unsupported("metric", func, METRICS_NOT_IMPLEMENTED.get(func))
        for getter in (result, expected):
            if getter is not None and getter.type not in GETTERS:
                return _unsupported("getter", getter.type, GETTERS_NOT_IMPLEMENTED.get(getter.type))
        if func == "compare_table":
            for rule in options.get("rules") or []:
                if isinstance(rule, dict) and rule.get("type") not in TABLE_RULE_TYPES:
                    return _unsupported("compare_table rule", rule.get("type"), None)
    return None


def evaluation_blocker(task: Task, controller: Controller | None = None) -> str | None:
    """Why the evaluator cannot score `task` here: something not implemented (evaluator_problem), or,
    given a controller, a reference file that is not available offline."""
    problem = evaluator_problem(task)
    if problem is not None or task.evaluator.func == "infeasible" or controller is None:
        return problem
    for _, result, expected, _ in task.evaluator.metrics():
        for getter in (result, expected):
            if getter is not None and getter.type == "cloud_file":
                urls = getter.options.get("path")
                for url in urls if isinstance(urls, list) else [urls]:
                    if locate(url, controller) is None:
                        return f"download not available offline: {url}"
    return None


def _short(value: Any) -> Any:
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + f"... ({len(text)} chars)"


def _get(controller: Controller, getter: GetterSpec) -> Any:
    return GETTERS[getter.type](controller, getter.options)


def evaluate_task(task: Task, controller: Controller, action_history: list[Any]) -> EvalResult:
    t0 = time.time()
    ev = task.evaluator
    blocker = evaluation_blocker(task, controller)
    if blocker is not None:
        return EvalResult(status="skipped", reason=blocker)
    try:
        run_steps(ev.postconfig, controller, phase="postconfig")
    except TaskSkipped as e:
        return EvalResult(status="skipped", reason=e.reason)
    except SetupError as e:
        return EvalResult(status="error", reason=f"postconfig failed: {e}")
    return score_actions(task, controller, action_history, t0)


def score_actions(task: Task, controller: Controller, action_history: list[Any], t0: float | None = None) -> EvalResult:
    """OSWorld's scoring after postconfig: infeasible/FAIL, then the getters and metrics as they stand."""
    t0 = time.time() if t0 is None else t0
    ev = task.evaluator
    last = action_history[-1] if action_history else None
    if ev.func == "infeasible":
        score = 1.0 if is_fail(last) else 0.0
        return EvalResult(status="scored", score=score,
                          reason="infeasible task: agent " + ("answered FAIL" if score else "did not answer FAIL"),
                          details={"last_action_fail": is_fail(last)})
    if is_fail(last):
        return EvalResult(status="scored", score=0.0, reason="agent answered FAIL on a feasible task")

    metrics = ev.metrics()
    conj = ev.conj if len(metrics) > 1 else "and"
    per_metric: list[dict] = []
    scores: list[float] = []
    for i, (func, result_spec, expected_spec, options) in enumerate(metrics):
        entry: dict[str, Any] = {"func": func}
        per_metric.append(entry)
        stage, spec = "result", result_spec
        try:
            result = _get(controller, result_spec) if result_spec is not None else None
            entry["result"] = _short(result)
            stage, spec = "expected", expected_spec
            expected = _get(controller, expected_spec) if expected_spec is not None else None
            if expected_spec is not None:
                entry["expected"] = _short(expected)
        except FileNotFoundError as e:
            # OSWorld: a missing file scores 0 ("and" stops here; "or" goes on).
            entry.update(score=0.0, missing=str(e))
            if conj == "and":
                return _scored(0.0, per_metric, t0, f"{stage} getter of {func}: file not found ({e})")
            scores.append(0.0)
            continue
        except TaskSkipped as e:
            return EvalResult(status="skipped", reason=e.reason, details={"metrics": per_metric})
        except Unsupported as e:
            return EvalResult(status="skipped", reason=f"unsupported: {e}", details={"metrics": per_metric})
        except Exception as e:
            return EvalResult(status="error", details={"metrics": per_metric},
                              reason=f"{stage} getter {spec.type!r} of {func} raised {type(e).__name__}: {e}")
        try:
            fn = METRICS[func]
            score = float(fn(result, expected, **options) if expected_spec is not None else fn(result, **options))
        except Unsupported as e:
            return EvalResult(status="skipped", reason=f"unsupported: {e}", details={"metrics": per_metric})
        except Exception as e:
            return EvalResult(status="error", reason=f"metric {func} raised {type(e).__name__}: {e}",
                              details={"metrics": per_metric})
        entry["score"] = score
        scores.append(score)
        if conj == "and" and score == 0.0:
            return _scored(0.0, per_metric, t0, f"{func} scored 0")
        if conj == "or" and score == 1.0:
            return _scored(1.0, per_metric, t0, f"{func} scored 1")
    final = sum(scores) / len(scores) if conj == "and" else max(scores)
    return _scored(final, per_metric, t0, "")


def as_task(task: Task | dict | str | Path) -> Task:
    """A task given as a `Task`, its JSON object, or the path of a task file."""
    if isinstance(task, Task):
        return task
    if isinstance(task, dict):
        return Task.model_validate(task)
    return load_task(task)


def start_task(task: Task, controller: Controller, *, blocker: str | None = None,
               settle_s: float = 0.0) -> tuple[str | None, str | None]:
    """OSWorld's reset for `task`: (skip reason, setup error), at most one of them set.

    The config steps run only when nothing blocks the task: `blocker` (the environment's own reason),
    the offline checks and the evaluator's. `settle_s` after a clean setup lets launched apps draw.
    """
    controller.failed_commands = []
    skip_reason = blocker or offline_blocker(task, controller) or evaluation_blocker(task, controller)
    if skip_reason is not None:
        return skip_reason, None
    try:
        run_steps(task.config, controller, phase="config")
    except TaskSkipped as e:
        return e.reason, None
    except SetupError as e:
        return None, str(e)
    time.sleep(settle_s)
    return None, None


def observation_extra(task: Task, skip_reason: str | None, setup_error: str | None) -> dict[str, Any]:
    """`Observation.extra` of reset's first observation: the task, and why it will not be scored, if so."""
    extra: dict[str, Any] = {"task_id": task.id, "instruction": task.instruction}
    if skip_reason is not None:
        extra["skipped"] = skip_reason
    if setup_error is not None:
        extra["setup_error"] = setup_error
    return extra


def evaluate_environment(task: Task | None, controller: Controller, action_history: list[Any],
                         skip_reason: str | None, setup_error: str | None) -> EvalResult:
    """`Environment.evaluate()`: what reset() found (no task, a skip reason, a failed setup) wins over scoring."""
    if task is None:
        return EvalResult(status="skipped", reason="no task was set by reset()")
    if skip_reason is not None:
        return EvalResult(status="skipped", reason=skip_reason)
    if setup_error is not None:
        result = EvalResult(status="error", reason=f"setup failed: {setup_error}")
    else:
        result = evaluate_task(task, controller, action_history)
    if controller.failed_commands:  # OSWorld ignores a failing setup command; the report names it
        result.details["failed_commands"] = list(controller.failed_commands)
    return result


def _scored(score: float, per_metric: list[dict], t0: float, reason: str) -> EvalResult:
    return EvalResult(status="scored", score=score, reason=reason,
                      details={"metrics": per_metric, "eval_seconds": round(time.time() - t0, 3)})
