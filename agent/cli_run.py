"""`qvl-agent run`, `qvl-agent replay` and `qvl-agent report`.

``run`` drives a sandboxed headless browser on the bundled local sites by default (never the user's live
desktop unless ``--env desktop``), with the embedded runtime, an OpenAI-compatible server
(``--base-url``) or a script of replies (``--script``). The run is recorded in ``--out`` (default
``runs/<timestamp>/``). ``replay RUN_DIR`` re-executes a recorded run with no model; ``report RUN_DIR`` rebuilds
report.html from what a run recorded (a run killed with SIGKILL had no chance to write it).
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

from agent import prompts
from agent.loop import DEFAULT_MAX_STEPS, AgentConfig, EpisodeResult, run_episode
from agent.policies import DEFAULT_MODEL, EmbeddedPolicy, OpenAIPolicy, PolicyError, ScriptedPolicy
from agent.progress import LoadProgress, StepProgress, WithProgress
from agent.report import describe, write_report
from agent.trajectory import (REPORT_FILE, RunHeader, StepRecord, load_header, load_result, load_steps,
                              require_new_run_dir)

OK_STATUSES = ("success", "answered")


def register(subparsers) -> None:
    run = subparsers.add_parser(
        "run", help="carry out an instruction with the agent",
        description="Run the agent on one instruction. Default: a sandboxed headless browser on the bundled "
                    "local sites, the embedded runtime with " + DEFAULT_MODEL + ".")
    run.add_argument("instruction", help="what to do, e.g. \"send a contact message to support\"")
    run.add_argument("--env", choices=["browser", "desktop"], default="browser",
                     help="browser: a sandboxed headless chromium (default); desktop: drive the X display in $DISPLAY")
    run.add_argument("--start-url", help="page the browser opens (default: the bundled local sites)")
    run.add_argument("--model", help=f"embedded: checkpoint folder or Hub id (default {DEFAULT_MODEL}); "
                                      "with --base-url: the served model name")
    run.add_argument("--quantize", choices=["int8"], help="embedded runtime on CPU: int8 weights (about twice the "
                     "decode speed of bf16, slightly different answers; model/cpu.py)")
    run.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM)")
    run.add_argument("--api-key", help="key for --base-url (default: $OPENAI_API_KEY)")
    run.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS,
                     help=f"actions before giving up (default {DEFAULT_MAX_STEPS})")
    run.add_argument("--out", help="run directory (default runs/<timestamp>)")
    run.add_argument("--confirm", nargs="?", const="risky", choices=["all", "risky"],
                     help="ask before risky actions (default when given) or before all actions")
    run.add_argument("--dry-run", action="store_true",
                     help="draw each intended action on the screenshot instead of executing it")
    run.add_argument("--profile", choices=list(prompts.PROFILES), default="qwen",
                     help="prompt profile: qwen (cookbook, default) or osworld")
    run.add_argument("--coord-divisor", type=float, default=None,
                     help="the model's coordinate grid size (default: the profile's, qwen 1000 and osworld 999; "
                          "osworld clicks OSWorld's floor pixel)")
    run.add_argument("--lenient-parse", action="store_true",
                     help="also accept action aliases (click, tap, ...) and bare {\"action\": ...} objects "
                          "that neither the cookbook nor OSWorld executes")
    run.add_argument("--unconstrained", action="store_true",
                     help="embedded runtime: sample freely instead of constraining each reply to one valid "
                          "computer_use call (model/constraints.py)")
    run.add_argument("--script", help="replies to use instead of a model: a JSON list of strings, a run "
                                      "directory or a traj.jsonl")
    run.add_argument("--headed", action="store_true", help="show the browser window (needs a display)")
    run.set_defaults(func=cmd_run)

    replay = subparsers.add_parser("replay", help="re-execute a recorded run without a model",
                                   description="Re-execute the replies recorded in RUN_DIR in the environment "
                                               "kind the run used; no model is loaded.")
    replay.add_argument("run_dir", help="a directory written by `qvl-agent run`")
    replay.add_argument("--out", help="where to record the replay (default RUN_DIR-replay-<timestamp>)")
    replay.add_argument("--headed", action="store_true", help="show the browser window (needs a display)")
    replay.set_defaults(func=cmd_replay)

    report = subparsers.add_parser("report", help="rebuild a run's report.html from what it recorded",
                                   description="Write RUN_DIR/report.html from run.json, traj.jsonl and the "
                                               "screenshots, e.g. after the run was killed before it could.")
    report.add_argument("run_dir", help="a directory written by `qvl-agent run`, `replay` or `eval`")
    report.set_defaults(func=cmd_report)


# ---------------------------------------------------------------- environments

@contextmanager
def open_environment(kind: str, start_url: str | None = None, sites_state_dir: Path | None = None,
                     headless: bool = True) -> Iterator[tuple[object, dict]]:
    """The environment for a run, and the header fields that describe it (for replay)."""
    if kind == "browser":
        from environments.browser import BrowserEnvironment

        with ExitStack() as stack:
            base = None
            if start_url is None:
                from environments.sites import serve_bundled_sites

                base = stack.enter_context(serve_bundled_sites(sites_state_dir))
                start_url = base + "/"
            env = BrowserEnvironment(start_url=start_url, headless=headless)
            stack.callback(env.close)
            yield env, {"env_kind": "browser", "start_url": start_url, "bundled_sites_base": base}
    elif kind == "desktop":
        display = os.environ.get("DISPLAY")
        if not display:
            raise ValueError("--env desktop drives the X display named by $DISPLAY, which is not set")
        from environments.desktop import DesktopEnvironment
        from tools.desktop import check_display

        check_display(display)

        env = DesktopEnvironment(display=display)
        try:
            yield env, {"env_kind": "desktop", "display": display}
        finally:
            env.close()
    else:
        raise ValueError(f"unknown environment {kind!r}; choose browser or desktop")


def _check_url(url: str) -> str:
    if not url.startswith(("http://", "https://", "file://", "about:")):
        raise ValueError(f"--start-url must be a full URL such as https://example.com, got {url!r}")
    return url


# ---------------------------------------------------------------- output

def print_step(rec: StepRecord) -> None:
    lat = rec.latency
    timing = " ".join(f"{k} {v:.2f}s" for k, v in (("policy", lat.policy), ("exec", lat.execute)) if v is not None)
    if rec.parsed_action is None:
        what = f"no action ({rec.parse_error or rec.info.get('error', 'unknown')})"
    else:
        what = describe(rec.parsed_action)
        if rec.target_px is not None:
            what += f" -> px ({rec.target_px[0]:.0f}, {rec.target_px[1]:.0f})"
        if rec.status != "ok":
            what += f" [{rec.status}]"
    extra = f"  {rec.visual_tokens} visual tok" if rec.visual_tokens else ""
    if rec.tokens_in is not None:
        extra += f", {rec.tokens_in} in/{rec.tokens_out} out"
    print(f"step {rec.step_num:>2}  {what}  {timing}{extra}", flush=True)


def _print_result(result: EpisodeResult, out_dir: Path) -> None:
    line = f"{result.status} after {result.steps} step{'s' if result.steps != 1 else ''}"
    if result.answer is not None:
        line += f"; answer: {result.answer}"
    print(line)
    print(f"run saved to {out_dir} (report: {out_dir / REPORT_FILE})")
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)


def _default_out(prefix: Path) -> Path:
    return prefix / datetime.now().strftime("%Y%m%d-%H%M%S")


# ---------------------------------------------------------------- commands

def make_policy(args):
    if args.script and args.base_url:
        raise ValueError("use either --script or --base-url, not both")
    if args.script:
        return ScriptedPolicy.from_file(args.script), args.script
    if args.base_url:
        if not args.model:
            raise ValueError("--base-url needs --model NAME (the model name the server serves)")
        return OpenAIPolicy(args.base_url, args.model, args.api_key or os.environ.get("OPENAI_API_KEY")), args.model
    model = args.model or DEFAULT_MODEL
    print(f"loading {model} ...", flush=True)
    return EmbeddedPolicy(model, progress=LoadProgress(), constrained=not args.unconstrained,
                          quantize=args.quantize), model


def cmd_run(args) -> int:
    if not args.instruction.strip():
        raise ValueError("the instruction is empty")
    if args.start_url and args.env != "browser":
        raise ValueError("--start-url applies to --env browser only")
    start_url = _check_url(args.start_url) if args.start_url else None
    config = AgentConfig(max_steps=args.max_steps, prompt_profile=args.profile, coord_divisor=args.coord_divisor,
                         dry_run=args.dry_run, lenient_parse=args.lenient_parse)
    if args.confirm:
        from agent.safety import terminal_confirm

        config.confirm = terminal_confirm(args.confirm)
    out_dir = require_new_run_dir(args.out) if args.out else _default_out(Path("runs"))
    try:
        policy, model_name = make_policy(args)
    except PolicyError as e:
        raise ValueError(str(e)) from None
    policy = WithProgress(policy, StepProgress())
    try:
        with open_environment(args.env, start_url, out_dir / "sites", headless=not args.headed) as (env, fields):
            header = RunHeader(instruction=args.instruction, model=model_name, policy=policy.kind, **fields)
            print(f"{args.env}: {fields.get('start_url') or fields.get('display')}  ->  {out_dir}", flush=True)
            obs = env.reset()
            result = run_episode(env, policy, args.instruction, obs, config=config, out_dir=out_dir,
                                 on_step=print_step, header=header)
    finally:
        if hasattr(policy, "close"):
            policy.close()
    _print_result(result, out_dir)
    if args.dry_run:
        print("dry run: nothing was executed; the intended actions are drawn in step_*_dryrun.png")
    return 0 if result.status in OK_STATUSES else 1


def cmd_replay(args) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    header = load_header(run_dir)
    recorded = load_result(run_dir)
    policy = ScriptedPolicy.from_trajectory(run_dir)
    if header.env_kind == "custom":
        raise ValueError(f"{run_dir} was recorded in a custom environment; replay it from Python with "
                         "ScriptedPolicy.from_trajectory")
    start_url = header.start_url
    out_dir = require_new_run_dir(args.out) if args.out else run_dir.with_name(
        f"{run_dir.name}-replay-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    config = AgentConfig(max_steps=max(header.max_steps or 0, len(policy.responses), 1), prompt_profile=header.profile,
                         coord_divisor=header.coord_divisor, history_images=header.history_images,
                         lenient_parse=header.lenient_parse)
    # The bundled sites listen on a new port each time: keep the recorded path, swap the base.
    bundled = header.env_kind == "browser" and header.bundled_sites_base is not None
    with ExitStack() as stack:
        if bundled:
            from environments.sites import serve_bundled_sites

            base = stack.enter_context(serve_bundled_sites(out_dir / "sites"))
            path = start_url[len(header.bundled_sites_base):] if start_url else "/"
            start_url = base + (path or "/")
        env, fields = stack.enter_context(open_environment(header.env_kind, start_url, headless=not args.headed))
        if bundled:
            fields["bundled_sites_base"] = base
        new_header = RunHeader(instruction=header.instruction, model=header.model, policy="scripted",
                               **{**fields, "replay_of": str(run_dir)})
        print(f"replaying {len(policy.responses)} replies from {run_dir} -> {out_dir}", flush=True)
        obs = env.reset()
        result = run_episode(env, policy, header.instruction, obs, config=config, out_dir=out_dir,
                             on_step=print_step, header=new_header)
    _print_result(result, out_dir)
    if recorded and recorded.get("status") != result.status:
        print(f"replay ended {result.status}, the recorded run ended {recorded.get('status')}", file=sys.stderr)
        return 1
    return 0 if result.status in OK_STATUSES or (recorded and recorded.get("status") == result.status) else 1


def cmd_report(args) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    load_header(run_dir)   # a clear error for a folder that is not a run
    path = write_report(run_dir)
    steps = len(load_steps(run_dir))
    result = load_result(run_dir)
    ended = f"ended {result.get('status')}" if result else "has no result.json (it was killed)"
    print(f"{path}: {steps} step(s); the run {ended}")
    return 0
