"""`qvl-agent eval`: run a task suite with one agent and score it (see environments.suite)."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from agent.prompts import PROFILES
from environments.suite import AGENTS, EvalSettings, format_table, load_tasks, run_suite

# Exit codes, so scripts and CI can act on a run (also in the README).
EXIT_OK = 0           # no task ended in error, and at least one was scored
EXIT_TASK_ERROR = 1   # some task ended in error (setup, agent or evaluator), or the run could not start
EXIT_NONE_SCORED = 3  # nothing errored, but every task was skipped (unsupported setup, missing app ...)

EPILOG = f"""exit codes: {EXIT_OK} every task ran without error and at least one was scored; {EXIT_TASK_ERROR} some task ended in
an error (or the run could not start); 2 bad arguments; {EXIT_NONE_SCORED} every task was skipped; 130/143 interrupted
(Ctrl-C / SIGTERM: finished tasks stay in summary.json and a rerun resumes)."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="run OSWorld-format tasks (default: the bundled suite) and score them",
        description="Run a task file, a folder of task files, or an OSWorld meta file ({domain: [ids]}) with one "
                    "agent; write OSWorld's per-task folders and summary.json. Rerunning into the same --out "
                    "resumes: finished tasks are not run again.", epilog=EPILOG)
    p.add_argument("tasks", nargs="?", default=None,
                   help="task file, folder, or meta file (default: the bundled suite)")
    p.add_argument("--examples", default=None,
                   help="examples folder of a meta file (default: <meta dir>/examples, else the meta file's folder)")
    p.add_argument("--agent", choices=AGENTS, default="embedded",
                   help="embedded model, OpenAI-compatible server, the tasks' oracle trajectories, or a sanity "
                        "agent that answers terminate(failure)/terminate(success) at once (default: embedded)")
    p.add_argument("--model", default=None,
                   help="embedded: checkpoint path or Hugging Face id (default Qwen/Qwen3-VL-2B-Instruct); "
                        "openai: the served model name")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server, e.g. http://host:8000/v1")
    p.add_argument("--api-key", default=None, help="API key for --base-url")
    p.add_argument("--max-steps", type=int, default=None,
                   help="step budget of every task (default: a task's own max_steps, else 50)")
    p.add_argument("--profile", choices=list(PROFILES), default="qwen", help="prompt profile (default qwen)")
    p.add_argument("--coord-divisor", type=float, default=None,
                   help="the model's coordinate grid (default: the profile's, qwen 1000 and osworld 999)")
    p.add_argument("--parallel", type=int, default=1,
                   help="worker processes, each with its own browser/display (default 1)")
    p.add_argument("--mirror", default=None, help="folder of offline copies of task downloads")
    p.add_argument("--out", default=None, help="output folder (default runs/eval-<timestamp>)")
    p.add_argument("--check", action="store_true",
                   help="run nothing: say for every task whether it would run, be skipped (and why) or end in an "
                        "error, and how many tasks per domain have an evaluator this harness implements")
    p.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    if args.check:
        return _check(args)
    if args.agent == "openai" and not (args.base_url and args.model):
        raise ValueError("--agent openai needs --base-url and --model")
    if args.mirror and not Path(args.mirror).is_dir():
        raise FileNotFoundError(f"mirror folder not found: {args.mirror}")
    settings = EvalSettings(agent=args.agent, model=args.model, base_url=args.base_url, api_key=args.api_key,
                            max_steps=args.max_steps, prompt_profile=args.profile, coord_divisor=args.coord_divisor,
                            mirror=args.mirror)
    settings.check(args.parallel)   # every option, before a task file is read or a worker starts
    tasks = load_tasks(args.tasks, args.examples)
    settings.check_agent()
    out = Path(args.out) if args.out else Path("runs") / f"eval-{datetime.now():%Y%m%d-%H%M%S}"
    print(f"eval: {len(tasks)} task(s), agent {args.agent}, {args.parallel} worker(s), output in {out}", flush=True)
    entries = run_suite(tasks, out, settings, parallel=args.parallel, log=lambda m: print(m, flush=True))
    print(format_table(entries))
    print(f"summary: {out / 'summary.json'}")
    return exit_code(entries)


def _check(args: argparse.Namespace) -> int:
    from environments.check import check_refs, format_checks
    from environments.suite import task_refs

    if args.mirror and not Path(args.mirror).is_dir():
        raise FileNotFoundError(f"mirror folder not found: {args.mirror}")
    checks = check_refs(task_refs(args.tasks, args.examples), Path(args.mirror) if args.mirror else None)
    print(format_checks(checks))
    return exit_code([{"status": {"run": "scored", "skip": "skipped"}.get(c.status, c.status)} for c in checks])


def exit_code(entries: list[dict]) -> int:
    if any(e["status"] == "error" for e in entries):
        return EXIT_TASK_ERROR
    if not any(e["status"] == "scored" for e in entries):
        return EXIT_NONE_SCORED
    return EXIT_OK
