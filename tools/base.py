"""The executor contract: what the agent loop and the environments need from a desktop or a browser.

Executors know nothing about the model. They take an `Action` plus an optional `target` in
*screenshot pixels* (the agent converts the model's relative grid into those), and map that pixel to
their own input space themselves (HiDPI scale, monitor offset, clamping).

The action semantics the schema leaves open are fixed once here, for every executor: which button and
how many presses each click is (`CLICKS`), wheel notches (`wheel_notches`), line breaks in `type`
(`type_text`), and the actions no input device takes part in (`run_without_device`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

from PIL import Image

from agent.actions import Action, ActionOutcome


@dataclass(frozen=True)
class ScreenGeometry:
    """How screenshot pixels relate to input coordinates.

    input_x = left + round(x_shot * input_width / shot_width), clamped into the monitor.
    """

    shot_width: int  # screenshot pixels (physical on HiDPI)
    shot_height: int
    input_width: int  # logical pixels the input device addresses
    input_height: int
    left: int = 0  # monitor offset in the input space (may be negative)
    top: int = 0

    @property
    def scale(self) -> float:
        return self.shot_width / self.input_width

    def to_input(self, x: float, y: float) -> tuple[int, int]:
        ix = round(x * self.input_width / self.shot_width)
        iy = round(y * self.input_height / self.shot_height)
        ix = min(max(ix, 0), self.input_width - 1)
        iy = min(max(iy, 0), self.input_height - 1)
        return self.left + ix, self.top + iy


class Executor(Protocol):
    """A screen the agent can see and act on."""

    def screenshot(self) -> Image.Image:
        """RGB image of the screen (or viewport) the targets refer to."""

    @property
    def geometry(self) -> ScreenGeometry: ...

    def execute(self, action: Action, target: tuple[float, float] | None = None) -> ActionOutcome:
        """Run one action; `target` is the action's point in screenshot pixels (None if it has none)."""

    def close(self) -> None: ...


CLICKS = {  # action -> (button, presses)
    "left_click": ("left", 1),
    "right_click": ("right", 1),
    "middle_click": ("middle", 1),
    "double_click": ("left", 2),
    "triple_click": ("left", 3),
}


def wheel_notches(pixels: float | None) -> int:
    """Wheel notches for a scroll amount; a nonzero fraction still scrolls one notch."""
    p = float(pixels or 0)
    n = int(round(p))
    return n if n or p == 0 else (1 if p > 0 else -1)


def require_target(point: tuple[int, int] | None, action_name: str) -> tuple[int, int]:
    """`point`, or a ValueError (reported as a failed action) for an action that cannot run without one."""
    if point is None:
        raise ValueError(f"action={action_name} needs a target point")
    return point


def type_text(text: str, type_line: Callable[[str], None], press_enter: Callable[[], None]) -> None:
    """The `type` action: each line break ("\n", "\r\n" or "\r") presses Enter, the text between goes to
    `type_line` (never called with an empty line)."""
    for i, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n")):
        if i:
            press_enter()
        if line:
            type_line(line)


def run_without_device(action: Action) -> ActionOutcome | None:
    """Run `wait`, `answer` or `terminate`, the actions no input device takes part in; None for the others."""
    if action.action == "wait":
        time.sleep(float(action.time or 0))
        return ActionOutcome()
    if action.action == "answer":
        return ActionOutcome(answer=action.text, done=True)
    if action.action == "terminate":
        return ActionOutcome(done=True, success=action.status == "success")
    return None
