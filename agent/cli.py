"""`qvl-agent` command line.

Each command lives next to the code it drives; the module named here exposes `register(subparsers)`,
which adds its subcommand(s) with `set_defaults(func=handler)`. Modules are imported only when
needed, so `qvl-agent --help` stays fast and a broken optional dependency affects only its command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import traceback

# command -> module that registers it
COMMANDS = {
    "run": "agent.cli_run",
    "replay": "agent.cli_run",
    "generate": "model.cli",
    "bench": "model.cli",
    "serve": "model.cli_serve",
    "quantize": "model.quantize",
    "doctor": "tools.doctor",
    "eval": "environments.cli_eval",
}

# Exceptions that mean "the user gave bad input": print the message alone.
USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ValueError,
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qvl-agent",
        description="GUI agents on Qwen3-VL: run tasks, evaluate suites, generate with the embedded runtime.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[only]] if only in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        try:
            importlib.import_module(name).register(sub)
        except ImportError as e:  # keep the other commands usable
            sub.add_parser(name.rsplit(".", 1)[-1], help=f"(unavailable: {e})")
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
    try:
        return int(args.func(args) or 0)
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


if __name__ == "__main__":
    sys.exit(main())
