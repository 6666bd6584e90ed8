"""`qvl-agent` command line.

Each command lives next to the code it drives; the module named here exposes `register(subparsers)`,
which adds its subcommand(s) with `set_defaults(func=handler)`. Modules are imported only when
needed, so `qvl-agent --help` stays fast and a broken optional dependency affects only its command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import tempfile
import threading
import traceback

# command -> (module that registers it, one-line summary for `qvl-agent --help`). The top-level help is built from
# this table alone, so listing the commands imports nothing (the command modules pull in PIL, numpy, torch ...).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("agent.cli_run", "carry out an instruction with the agent"),
    "replay": ("agent.cli_run", "re-execute a recorded run without a model"),
    "report": ("agent.cli_run", "rebuild a run's report.html from what it recorded"),
    "eval": ("environments.cli_eval", "run OSWorld-format tasks (default: the bundled suite) and score them"),
    "generate": ("model.cli", "answer a prompt (with images) using the embedded runtime"),
    "download": ("model.cli", "download a checkpoint from the Hugging Face Hub into the local cache"),
    "quantize": ("model.cli", "write an FP8 (128x128 block) copy of a bf16/fp32 Qwen3-VL checkpoint"),
    "bench": ("model.cli", "prefill/decode speed: embedded runtime vs transformers"),
    "doctor": ("tools.doctor", "check the coordinate chain on every monitor"),
}

# Exceptions that mean "the user gave bad input" or "the machine is not set up": print the message alone.
USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ValueError,
    ConnectionError,    # a server or the Hub cannot be reached: the message says which
    ChildProcessError,  # a worker process died: the message says what was kept
)


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill PID`) unwinds like Ctrl-C: a run still writes result.json and report.html, an eval keeps its
    summary and its workers close their displays."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with `only`'s module registered (its real arguments), the other commands as summaries."""
    parser = argparse.ArgumentParser(
        prog="qvl-agent",
        description="GUI agents on Qwen3-VL: run tasks, evaluate suites, generate with the embedded runtime.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    registered: set[str] = set()
    if only in COMMANDS:
        module = COMMANDS[only][0]
        try:
            importlib.import_module(module).register(sub)
        except ImportError as e:  # a broken optional dependency affects only its command
            sub.add_parser(only, help=f"(unavailable: {e})")
        registered = set(sub.choices)
    for name, (_, summary) in COMMANDS.items():
        if name not in registered:
            sub.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the module that owns the requested command.
    only = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get("QVL_DEBUG") == "1"
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return int(args.func(args) or 0)
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one line for the user, the traceback to a file
        if debug:
            raise
        log = os.path.join(tempfile.gettempdir(), "qvl-agent-error.log")
        with open(log, "w") as f:
            traceback.print_exc(file=f)
        msg = str(e) or type(e).__name__
        if isinstance(e, USER_ERRORS) or type(e).__name__ == "ValidationError":
            print(f"error: {msg}", file=sys.stderr)
        else:
            print(f"error: {type(e).__name__}: {msg} (internal error; traceback in {log}, --debug to show)",
                  file=sys.stderr)
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":
    sys.exit(main())
