"""The executor contract: what the agent loop and the environments need from a desktop or a browser.

Executors know nothing about the model. They take an `Action` plus an optional `target` in
*screenshot pixels* (the agent converts the model's relative grid into those), and map that pixel to
their own input space themselves (HiDPI scale, monitor offset, clamping).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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
