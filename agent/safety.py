"""Which actions are risky, and asking the user before executing them.

`AgentConfig.confirm(action, reason)` is called before every non-final action; ``reason`` is "" for
ordinary actions and says why otherwise. `terminal_confirm("risky")` asks only when there is a reason,
`terminal_confirm("all")` always asks.
"""

from __future__ import annotations

import sys
from typing import Callable, Literal

from agent.actions import Action
from agent.report import describe
from tools.keys import parse_chord

# Key chords that end sessions, close or kill windows, or lock the screen, in tools.keys' canonical names
# (the names the executors press), so every spelling the executors accept is caught here too.
RISKY_CHORDS: dict[frozenset[str], str] = {
    frozenset({"ctrl", "alt", "delete"}): "ctrl+alt+delete",
    frozenset({"ctrl", "alt", "backspace"}): "kills the X session",
    frozenset({"alt", "f4"}): "closes the window",
    frozenset({"ctrl", "w"}): "closes the tab/window",
    frozenset({"ctrl", "shift", "w"}): "closes the window",
    frozenset({"ctrl", "q"}): "quits the application",
    frozenset({"super", "q"}): "quits the application",
    frozenset({"super", "w"}): "closes the window",
    frozenset({"super", "l"}): "locks the screen",
    frozenset({"ctrl", "alt", "l"}): "locks the screen",
    frozenset({"ctrl", "alt", "t"}): "opens a terminal",
    frozenset({"super", "r"}): "opens the run dialog",
    frozenset({"shift", "delete"}): "deletes permanently",
}


def chord_keys(keys: list[str]) -> frozenset[str]:
    """Canonical key names of a chord; right-hand modifiers count as the modifier itself."""
    try:
        names = parse_chord(keys)
    except ValueError:  # the executor refuses it anyway
        return frozenset()
    return frozenset(n.removesuffix("right") if n.endswith("right") and len(n) > 5 else n for n in names)


def risk_reason(action: Action, password_field: bool = False) -> str:
    """Why ``action`` needs the user's consent, or "" when it is ordinary."""
    if action.action == "key" and action.keys:
        chord = chord_keys(action.keys)
        for risky, why in RISKY_CHORDS.items():
            if risky <= chord:
                return f"key chord {'+'.join(action.keys)} ({why})"
    if action.action == "type" and password_field:
        return "types into a password field"
    return ""


def typing_into_password(env) -> bool:
    """True when the environment reports that the focused element is a password field (browser)."""
    probe = getattr(getattr(env, "executor", None), "focused_is_password", None)
    if not callable(probe):
        return False
    try:
        return bool(probe())
    except Exception:  # a closed or navigating page: nothing focused to protect
        return False


ConfirmMode = Literal["all", "risky"]


def terminal_confirm(mode: ConfirmMode = "risky", stream_in=None, stream_out=None) -> Callable[[Action, str], bool]:
    """A `confirm` callback that asks on the terminal: y/yes executes, anything else declines."""
    if mode not in ("all", "risky"):
        raise ValueError(f"--confirm must be 'all' or 'risky', got {mode!r}")

    def confirm(action: Action, reason: str) -> bool:
        if mode == "risky" and not reason:
            return True
        fin = stream_in or sys.stdin
        fout = stream_out or sys.stderr
        fout.write(f"execute {describe(action)}" + (f" — {reason}" if reason else "") + "? [y/N] ")
        fout.flush()
        answer = fin.readline()
        return answer.strip().lower() in ("y", "yes")

    return confirm
