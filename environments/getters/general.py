"""Command getters (OSWorld `getters/general.py`): a command's output on the task machine, the terminal's text."""

from __future__ import annotations

import re

from environments.controller import Controller


def _shell(cfg: dict) -> bool:
    from environments.tasks import truthy

    return truthy(cfg.get("shell", False))


def get_vm_command_line(c: Controller, cfg: dict) -> str:
    """The command's stdout (trailing newline kept, as OSWorld's tasks expect)."""
    return c.run(cfg["command"], shell=_shell(cfg)).output


def get_vm_command_error(c: Controller, cfg: dict) -> str:
    return c.run(cfg["command"], shell=_shell(cfg)).error


_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][A-Za-z0-9]|[=>78])")


def get_vm_terminal_output(c: Controller, cfg: dict) -> str | None:
    """Text of the terminal the user typed into last.

    OSWorld reads the focused gnome-terminal through AT-SPI; here the ctrl+alt+t terminal is an
    xterm that logs its session (`-l`), so this is the session's text (escape sequences removed),
    not only what is on screen. None when no terminal is open.
    """
    runtime = c.host_path(c.env["XDG_RUNTIME_DIR"])
    by_pid = {int(log.stem.split("-", 1)[1]): log for log in runtime.glob("terminal-*.log")
              if log.stem.split("-", 1)[1].isdigit()}  # named by the pid of their xterm in the sandbox
    live = [by_pid[pid] for pid in c.sandbox.alive(list(by_pid))] if by_pid else []
    if not live:
        return None
    text = max(live, key=lambda p: p.stat().st_mtime).read_bytes().decode("utf-8", errors="replace")
    return _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "")


GETTERS = {"vm_command_line": get_vm_command_line, "vm_command_error": get_vm_command_error,
           "vm_terminal_output": get_vm_terminal_output}
