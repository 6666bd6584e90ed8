"""The environment contract the agent loop drives: desktop and browser look the same from the loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from PIL import Image
from pydantic import BaseModel, ConfigDict

from agent.actions import Action, ActionOutcome

if TYPE_CHECKING:
    from tools.base import Executor


@dataclass
class Observation:
    screenshot: Image.Image  # RGB; action targets are pixels of this image
    url: str | None = None  # browser environments: the page URL
    extra: dict = field(default_factory=dict)


class EvalResult(BaseModel):
    """Outcome of scoring one task. `error` and `skipped` are never a pass."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["scored", "skipped", "error"]
    score: float = 0.0
    reason: str = ""
    details: dict = {}


class Environment(Protocol):
    executor: "Executor"

    def reset(self, task=None) -> Observation:
        """Restore a clean state, run the task's setup steps, return the first observation."""

    def step(self, action: Action, target: tuple[float, float] | None = None) -> tuple[Observation, ActionOutcome]:
        """Execute one action (target in pixels of the last observation's screenshot) and observe again."""

    def evaluate(self) -> EvalResult:
        """Score the current state against the task's evaluator (OSWorld semantics)."""

    def close(self) -> None: ...
