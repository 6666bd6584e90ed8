"""The eval runner behind `qvl-agent eval`: run a set of OSWorld-format tasks with one agent, score each.

Output, per task, OSWorld's layout plus our summary:

    <out>/<domain>/<task_id>/traj.jsonl, step_*.png, result.txt   (result.txt = the score, scored tasks only)
    <out>/<domain>/<task_id>/eval.json                            (the evaluator's details, evaluated tasks)
    <out>/summary.json   {"run": {...}, "tasks": [{id, domain, status, score, steps, seconds, reason}], "by_domain": {...}}

summary.json is rewritten after every task, so a killed run keeps what it finished; running again into
the same folder resumes: scored tasks (summary entry + result.txt) are not rerun, skipped and failed
ones are tried again. Tasks run in worker processes (`parallel` of them), each with its own environments:
a headless browser for browser-only tasks, a private Xvfb desktop for the rest. The parent never opens a
display, so pyautogui's one-display-per-process rule holds.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from agent.progress import EvalProgress
from agent.trajectory import EVAL_FILE
from environments.sites import fill_site_placeholders, uses_sites
from environments.tasks import Task, TaskRef, load_ref, meta_refs, task_dir_refs

BUNDLED_DIR = Path(__file__).parent / "tasks"
BUNDLED_META = BUNDLED_DIR / "test_all.json"
SUMMARY_FILE = "summary.json"
RESULT_FILE = "result.txt"
ORACLE_SUFFIX = ".oracle.jsonl"
AGENTS = ("embedded", "openai", "oracle", "fail", "done")
SANITY_REPLIES = {
    "fail": '<tool_call>\n{"name": "computer_use", "arguments": {"action": "terminate", "status": "failure"}}\n</tool_call>',
    "done": '<tool_call>\n{"name": "computer_use", "arguments": {"action": "terminate", "status": "success"}}\n</tool_call>',
}


class AgentUnavailable(Exception):
    """The model cannot be loaded or the policy not built: the run stops with this message."""


class TaskOutcome(BaseModel):
    """One line of summary.json."""

    id: str
    domain: str
    status: Literal["scored", "skipped", "error"]
    score: float = 0.0
    steps: int = 0
    seconds: float = 0.0
    reason: str = ""


@dataclass
class EvalSettings:
    """What every worker needs to run a task (sent to worker processes, so plain data only)."""

    agent: str = "oracle"
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    max_steps: int | None = None  # None: each task's own budget, else DEFAULT_MAX_STEPS
    prompt_profile: str = "qwen"
    coord_divisor: float | None = None  # None: the profile's (agent.coords.PROFILE_GRID)
    mirror: str | None = None
    policy_options: dict = field(default_factory=dict)  # extra keyword arguments of the policy (max_new_tokens, ...)
    shared_server: str | None = None  # embedded with parallel workers: the parent's engine, served on loopback

    def check(self, parallel: int = 1) -> None:
        """Refuse bad settings before any task is read, worker started or model loaded (ValueError)."""
        from agent.loop import DEFAULT_MAX_STEPS, AgentConfig

        if self.agent not in AGENTS:
            raise ValueError(f"unknown agent {self.agent!r}; choose one of {', '.join(AGENTS)}")
        if parallel < 1:
            raise ValueError(f"--parallel must be at least 1, got {parallel}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps must be at least 1, got {self.max_steps}")
        AgentConfig(max_steps=self.max_steps or DEFAULT_MAX_STEPS, prompt_profile=self.prompt_profile,
                    coord_divisor=self.coord_divisor)   # its own checks: profile, divisor

    def check_agent(self) -> None:
        """A checkpoint that is not there fails here, once, rather than in every worker."""
        if self.agent == "embedded":
            from model.config import DEFAULT_MODEL
            from model.loader import resolve_model_path

            resolve_model_path(self.model or DEFAULT_MODEL)

    def run_info(self) -> dict:
        return {"agent": self.agent, "model": self.model, "base_url": self.base_url, "max_steps": self.max_steps,
                "prompt_profile": self.prompt_profile, "coord_divisor": self.coord_divisor}


# ---- task selection --------------------------------------------------------------------------------

def task_refs(spec: str | os.PathLike | None = None, examples_dir: str | os.PathLike | None = None) -> list[TaskRef]:
    """The task files `spec` names: a task file, a folder of task files, or a meta file `{domain: [ids]}`.

    None = the bundled suite. A meta file's task files are `<examples>/<domain>/<id>.json` with
    `<examples>` = `examples_dir`, else OSWorld's `<meta dir>/examples`, else the meta file's own folder.
    A folder holding a `test_all.json` is read through that meta file.
    """
    path = Path(spec) if spec is not None else BUNDLED_META
    if not path.exists():
        raise FileNotFoundError(f"no task file, folder or meta file at {path}")
    if path.is_dir():
        if (path / "test_all.json").is_file():
            return task_refs(path / "test_all.json", examples_dir)
        return task_dir_refs(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(data, dict) and "instruction" not in data and all(isinstance(v, list) for v in data.values()):
        if examples_dir is None:
            examples_dir = path.parent / "examples" if (path.parent / "examples").is_dir() else path.parent
        return meta_refs(path, examples_dir)
    return [(path, None, None)]


def load_tasks(spec: str | os.PathLike | None = None, examples_dir: str | os.PathLike | None = None) -> list[Task]:
    """Tasks named by `spec` (see task_refs); the first unreadable task file is an error naming it."""
    return [load_ref(r) for r in task_refs(spec, examples_dir)]


def oracle_path(task: Task) -> Path | None:
    return task.path.with_name(task.id + ORACLE_SUFFIX) if task.path is not None else None


def load_oracle(task: Task) -> list[str]:
    """The task's oracle: raw model replies, one JSON string per line of `<id>.oracle.jsonl`."""
    path = oracle_path(task)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"task {task.id} has no oracle trajectory ({path})")
    replies = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not replies or not all(isinstance(r, str) for r in replies):
        raise ValueError(f"{path}: an oracle is one JSON string (a raw model reply) per line")
    return replies


# ---- embedded agent with parallel workers: one engine in the parent ------------------------------------

SHARED_MODEL_NAME = "embedded"
_LOADING_OPTIONS = ("dtype", "device", "progress", "kv_cache_memory", "max_model_len", "constrained")


def shared_sampling(policy_options: dict) -> dict:
    """EmbeddedPolicy options -> the OpenAIPolicy's request fields for the same replies."""
    out = {k: v for k, v in policy_options.items() if k not in _LOADING_OPTIONS and k != "max_new_tokens"}
    out["max_tokens"] = policy_options.get("max_new_tokens", 512)
    return out


def start_shared_engine(settings: EvalSettings, max_num_seqs: int):
    """Load the embedded model once and serve it on a free loopback port: (server, engine)."""
    from agent.policies import DEFAULT_MODEL
    from model.engine import Engine
    from model.server.local import serve_engine

    options = settings.policy_options
    loading = {k: options[k] for k in ("dtype", "device") if k in options}
    engine = Engine.from_pretrained(settings.model or DEFAULT_MODEL, max_num_seqs=max_num_seqs,
                                    kv_cache_memory=options.get("kv_cache_memory", "0.25"),
                                    max_model_len=options.get("max_model_len"), **loading)
    factory = {}
    if options.get("constrained", True):   # as EmbeddedPolicy: every reply is one valid computer_use call
        from model.constraints import ToolCallGrammar

        m = engine.model
        grammar = ToolCallGrammar(m.preprocessor.tokenizer, m.config.text.vocab_size, m.eos_token_ids)
        factory = {"constraint_factory": lambda body, tokenizer: grammar.constraint()}
    try:
        return serve_engine(engine, SHARED_MODEL_NAME, **factory), engine
    except BaseException:
        engine.close()
        engine.model.close()
        raise


# ---- one worker: environments kept across tasks ---------------------------------------------------

class Workbench:
    """A worker's environments, sites server and policy, created on first use and reused across tasks."""

    def __init__(self, settings: EvalSettings):
        self.settings = settings
        self._browser = None
        self._desktop = None
        self._sites = None
        self._policy = None

    @property
    def sites(self):
        if self._sites is None:
            from environments.sites import SiteServer

            self._sites = SiteServer()
        return self._sites

    def environment(self, task: Task):
        """The environment for `task`: the worker's browser for browser-only tasks, its desktop for the rest."""
        from environments.browser import BrowserEnvironment, runs_in_browser

        if runs_in_browser(task):
            if self._browser is None:
                self._browser = BrowserEnvironment(sites=self.sites)
            return self._browser
        if self._desktop is None:
            from environments.desktop import DesktopEnvironment

            kwargs = {"mirror": Path(self.settings.mirror)} if self.settings.mirror else {}
            self._desktop = DesktopEnvironment(**kwargs)
        return self._desktop

    def policy(self, task: Task):
        from agent.policies import EmbeddedPolicy, OpenAIPolicy, ScriptedPolicy

        s = self.settings
        if s.agent == "oracle":
            replies = load_oracle(task)
            return ScriptedPolicy(fill_site_placeholders(replies, self.sites) if uses_sites(replies) else replies)
        if s.agent in SANITY_REPLIES:
            return ScriptedPolicy([SANITY_REPLIES[s.agent]])
        if self._policy is None:  # model-backed policies are loaded once per worker
            try:
                if s.agent == "openai":
                    self._policy = OpenAIPolicy(s.base_url, s.model, s.api_key, **s.policy_options)
                elif s.shared_server:  # embedded, parallel: every worker asks the one engine of the parent
                    self._policy = OpenAIPolicy(s.shared_server, SHARED_MODEL_NAME,
                                                **shared_sampling(s.policy_options))
                else:
                    model = {"model": s.model} if s.model else {}  # else the policy's default checkpoint
                    self._policy = EmbeddedPolicy(**model, **s.policy_options)
            except Exception as e:  # noqa: BLE001 - no task can run without it
                raise AgentUnavailable(str(e) or type(e).__name__) from e
        return self._policy

    def _close(self, name: str) -> None:
        thing = getattr(self, name)
        setattr(self, name, None)
        close = getattr(thing, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - shutting down: keep closing the rest
                traceback.print_exc()

    def close(self) -> None:
        for name in ("_browser", "_desktop", "_sites", "_policy"):
            self._close(name)


def step_budget(settings: EvalSettings, task: Task, policy) -> int:
    """--max-steps when given, else the task file's own max_steps, else the default; the oracle always gets as many
    steps as it has replies."""
    from agent.loop import DEFAULT_MAX_STEPS

    budget = settings.max_steps or task.max_steps or DEFAULT_MAX_STEPS
    if settings.agent == "oracle":
        budget = max(budget, len(policy.responses))
    return budget


def run_task(bench: Workbench, task: Task, task_dir: Path, on_step=None) -> TaskOutcome:
    """Reset, run the agent, evaluate: one task, never raising (failures become skipped/error outcomes).
    `on_step(StepRecord)` is called after every model turn."""
    from agent.loop import AgentConfig, run_episode
    from agent.report import write_report
    from agent.trajectory import RunHeader
    from environments.browser import runs_in_browser, start_on_sites

    t0 = time.perf_counter()
    outcome = dict(id=task.id, domain=task.domain or "", steps=0)

    def done(status: str, reason: str = "", score: float = 0.0) -> TaskOutcome:
        return TaskOutcome(**outcome, status=status, score=score, reason=reason,
                           seconds=round(time.perf_counter() - t0, 2))

    s = bench.settings
    try:
        policy = bench.policy(task)  # AgentUnavailable propagates: it ends the whole run
    except FileNotFoundError as e:  # no oracle trajectory for this task
        return done("skipped", str(e))
    except ValueError as e:  # an unreadable oracle file
        return done("error", f"oracle: {e}")
    try:
        config = AgentConfig(max_steps=step_budget(s, task, policy), prompt_profile=s.prompt_profile,
                             coord_divisor=s.coord_divisor)
        env = bench.environment(task)
        sites_used = uses_sites(task.model_dump(mode="json"))
        if sites_used:  # desktop tasks too may name the bundled sites: this worker's server serves them
            task = start_on_sites(task, bench.sites)
        first_obs = env.reset(task)
    except Exception as e:  # noqa: BLE001 - a display or browser that will not start is this task's error
        return done("error", f"setup: {type(e).__name__}: {e}")

    # Environments report a task they cannot run, or a failed setup, in the first observation.
    if first_obs.extra.get("skipped"):
        return done("skipped", first_obs.extra["skipped"])
    if first_obs.extra.get("setup_error"):
        return done("error", f"setup failed: {first_obs.extra['setup_error']}")
    header = RunHeader(instruction=task.instruction, env_kind="browser" if runs_in_browser(task) else "desktop",
                       display=getattr(env, "display", None), model=s.model, policy=s.agent,
                       bundled_sites_base=bench.sites.url if sites_used else None)
    try:
        episode = run_episode(env, policy, task.instruction, first_obs, config=config, out_dir=task_dir,
                              header=header, on_step=on_step)
    except Exception as e:  # noqa: BLE001
        return done("error", f"agent: {type(e).__name__}: {e}")
    outcome["steps"] = episode.steps
    if episode.status == "error":
        return done("error", f"agent: {episode.error}")

    try:
        result = env.evaluate()
    except Exception as e:  # noqa: BLE001 - an evaluator crash is never a pass
        return done("error", f"evaluator: {type(e).__name__}: {e}")
    (task_dir / EVAL_FILE).write_text(result.model_dump_json(indent=2))
    write_report(task_dir)   # again, now with the evaluator's verdict
    if result.status != "scored":
        return done(result.status, result.reason)
    (task_dir / RESULT_FILE).write_text(f"{result.score}\n")
    return done("scored", result.reason, result.score)


def _term_when_parent_dies() -> None:
    """Linux: have the kernel send SIGTERM to this worker if the eval process is killed outright."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _worker(settings: EvalSettings, jobs, results, worker: int = 0) -> None:
    """Worker process: run (task, dir) jobs until the None sentinel, one Workbench for all of them. Besides each
    task's outcome it reports every step ({"worker", "task", "step"}) for the parent's progress display."""
    # SIGTERM from the parent (an interrupted run) unwinds like an exception, so the displays and
    # browsers this worker started are closed rather than orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    _term_when_parent_dies()
    bench = Workbench(settings)
    try:
        while True:
            job = jobs.get()
            if job is None:
                break
            task_json, domain, path, task_dir = job
            task = Task.model_validate(task_json).model_copy(
                update={"domain": domain, "path": Path(path) if path else None})
            name = f"{domain}/{task.id}" if domain else task.id
            results.put({"worker": worker, "task": name, "step": 0})

            def on_step(rec, name=name) -> None:
                results.put({"worker": worker, "task": name, "step": rec.step_num})

            try:
                outcome = run_task(bench, task, Path(task_dir), on_step)
            except AgentUnavailable as e:
                results.put({"fatal": str(e)})
                break
            except Exception as e:  # noqa: BLE001 - run_task reports its own failures; this is a bug net
                outcome = TaskOutcome(id=task.id, domain=domain, status="error", reason=f"{type(e).__name__}: {e}")
            results.put({**outcome.model_dump(), "worker": worker})
    finally:
        bench.close()


# ---- the run: resume, workers, summary -------------------------------------------------------------

def _task_key(domain: str | None, task_id: str) -> tuple[str, str]:
    return domain or "", task_id


def read_summary(out_dir: Path) -> dict:
    path = out_dir / SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg}); remove it or choose another --out") from None


def finished(out_dir: Path, entry: dict) -> bool:
    """Done for good: scored, with its result.txt on disk. Skipped and failed tasks are tried again, since
    what stopped them (a missing mirror file or app, a crashed browser) may have been fixed since."""
    return entry.get("status") == "scored" and (out_dir / entry["domain"] / entry["id"] / RESULT_FILE).is_file()


def by_domain(entries: list[dict]) -> dict:
    table: dict[str, dict] = {}
    for e in entries:
        d = table.setdefault(e["domain"], {"tasks": 0, "scored": 0, "skipped": 0, "error": 0, "score_sum": 0.0,
                                           "passed": 0})
        d["tasks"] += 1
        d[e["status"]] += 1
        if e["status"] == "scored":
            d["score_sum"] += e["score"]
            d["passed"] += e["score"] >= 1.0
    for d in table.values():
        d["mean_score"] = round(d.pop("score_sum") / d["scored"], 4) if d["scored"] else None
    return dict(sorted(table.items()))


def write_summary(out_dir: Path, run_info: dict, entries: list[dict]) -> None:
    summary = {"run": run_info, "tasks": entries, "by_domain": by_domain(entries)}
    tmp = out_dir / (SUMMARY_FILE + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    os.replace(tmp, out_dir / SUMMARY_FILE)


def format_table(entries: list[dict]) -> str:
    rows = [("domain", "tasks", "scored", "passed", "skipped", "error", "mean score")]
    totals = by_domain([{**e, "domain": "all"} for e in entries]).get("all")
    for name, d in list(by_domain(entries).items()) + ([("all", totals)] if totals else []):
        mean = "-" if d["mean_score"] is None else f"{d['mean_score']:.3f}"
        rows.append((name, str(d["tasks"]), str(d["scored"]), str(d["passed"]), str(d["skipped"]),
                     str(d["error"]), mean))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    if totals:
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
    problems = [f"  {e['domain']}/{e['id']}: {e['status']}: {e['reason']}" for e in entries
                if e["status"] != "scored"]
    return "\n".join(lines + (["not scored:"] + problems if problems else []))


def _stop(workers: list, wait_s: float) -> None:
    """Let workers finish (they close their environments on the way out), then SIGTERM, then SIGKILL."""
    for w in workers:
        w.join(wait_s)
    for w in workers:
        if w.is_alive():
            w.terminate()  # the worker turns SIGTERM into SystemExit and still closes its environments
    for w in workers:
        w.join(15)
        if w.is_alive():
            w.kill()
            w.join(5)


def run_suite(tasks: list[Task], out_dir: str | os.PathLike, settings: EvalSettings, parallel: int = 1,
              log=print) -> list[dict]:
    """Run `tasks` into `out_dir` (resuming a previous run there); returns the summary's task entries."""
    settings.check(parallel)
    settings.check_agent()
    seen: set[tuple[str, str]] = set()
    for t in tasks:
        key = _task_key(t.domain, t.id)
        if key in seen:
            raise ValueError(f"task {t.domain}/{t.id} is listed twice")
        seen.add(key)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    previous = read_summary(out)
    run_info = settings.run_info()
    if previous.get("run") and previous["run"].get("agent") != settings.agent:
        raise ValueError(f"{out} holds a run of agent {previous['run'].get('agent')!r}; "
                         f"resume it with the same --agent or choose another --out")
    # Finished entries stay in the summary (also those of tasks outside this selection).
    entries = [e for e in previous.get("tasks", []) if finished(out, e)]
    done_keys = {_task_key(e["domain"], e["id"]) for e in entries}
    todo = [t for t in tasks if _task_key(t.domain, t.id) not in done_keys]
    if previous:
        log(f"resuming in {out}: {len(tasks) - len(todo)} task(s) already done, {len(todo)} to run")
    # summary.json is (re)written once a task finishes: a run that ends before that leaves the folder as it was

    for t in todo:  # a half-written task folder from an interrupted run starts over
        d = out / (t.domain or "") / t.id
        if d.exists():
            shutil.rmtree(d)

    total, n_done = len(tasks), len(tasks) - len(todo)
    ctx = mp.get_context("spawn")
    jobs, results = ctx.Queue(), ctx.Queue()
    for t in todo:
        jobs.put((t.model_dump(mode="json"), t.domain or "", str(t.path) if t.path else None,
                  str(out / (t.domain or "") / t.id)))
    n_workers = min(parallel, len(todo))
    for _ in range(n_workers):
        jobs.put(None)
    shared = None
    if settings.agent == "embedded" and n_workers > 1:  # one model for all workers, not one per worker
        try:
            shared = start_shared_engine(settings, max_num_seqs=n_workers)
        except Exception as e:  # noqa: BLE001 - as a worker's AgentUnavailable: no task can run
            raise ValueError(f"agent embedded: {e}") from e
        log(f"one embedded engine for {n_workers} workers at {shared[0].base_url}")
        settings = replace(settings, shared_server=shared[0].base_url)
    workers = [ctx.Process(target=_worker, args=(settings, jobs, results, i + 1), daemon=True)
               for i in range(n_workers)]
    for w in workers:
        w.start()
    progress = EvalProgress(total, n_done, log)
    try:
        remaining = len(todo)
        while remaining:
            try:
                entry = results.get(timeout=5)
            except queue.Empty:
                progress.tick()
                if not any(w.is_alive() for w in workers):
                    codes = ", ".join(str(w.exitcode) for w in workers)
                    raise ChildProcessError(f"the eval workers exited (exit codes {codes}) with {remaining} task(s) "
                                            f"unfinished; finished tasks are in {out / SUMMARY_FILE}, and running "
                                            "again into the same --out resumes") from None
                continue
            if "fatal" in entry:  # e.g. the model is not there: one message, and no task is marked done
                raise AgentUnavailable(entry["fatal"])
            worker = entry.pop("worker")
            if "step" in entry:
                progress.step(worker, entry["task"], entry["step"])
                continue
            remaining -= 1
            entries.append(entry)
            write_summary(out, run_info, entries)
            score = f"score {entry['score']:.2f}" if entry["status"] == "scored" else entry["status"]
            why = f" ({entry['reason']})" if entry["status"] != "scored" and entry["reason"] else ""
            progress.task_done(worker, f"[{progress.done + 1}/{total}] {entry['domain']}/{entry['id']}: {score}, "
                                       f"{entry['steps']} steps, {entry['seconds']:.1f} s{why}")
    except AgentUnavailable as e:  # every worker will find the same: let them close their displays and exit
        _stop(workers, wait_s=30)
        raise ValueError(f"agent {settings.agent}: {e}") from None
    except BaseException:  # interrupted: finished tasks are already in summary.json
        _stop(workers, wait_s=0)
        raise
    finally:
        progress.close()
        if shared is not None:
            _stop(workers, wait_s=60)
            server, engine = shared
            server.stop()
            engine.close()
            engine.model.close()
    _stop(workers, wait_s=60)
    order = {_task_key(t.domain, t.id): i for i, t in enumerate(tasks)}
    entries.sort(key=lambda e: order.get(_task_key(e["domain"], e["id"]), len(order)))
    write_summary(out, run_info, entries)
    return entries
