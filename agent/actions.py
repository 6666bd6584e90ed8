"""Typed actions of Qwen3-VL's `computer_use` tool: the boundary between the model's text and the executors.

A parsed tool call becomes an `Action`. Its `coordinate` stays in the model's relative grid
(0..divisor, divisor 1000 by default); the agent maps it to screenshot pixels (`agent.coords`) and
hands executors that pixel as a separate `target`, so executors never see the model's grid.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ActionName = Literal[
    "key",
    "type",
    "mouse_move",
    "left_click",
    "left_click_drag",
    "right_click",
    "middle_click",
    "double_click",
    "triple_click",
    "scroll",
    "hscroll",
    "wait",
    "terminate",
    "answer",
]

ACTION_NAMES: tuple[str, ...] = ActionName.__args__  # type: ignore[attr-defined]

# Actions whose schema makes `coordinate` mandatory. Clicks may omit it (click where the cursor is).
COORDINATE_REQUIRED = {"mouse_move", "left_click_drag"}
POINTER_ACTIONS = {
    "mouse_move", "left_click", "left_click_drag", "right_click", "middle_click",
    "double_click", "triple_click", "scroll", "hscroll",
}
FINAL_ACTIONS = {"terminate", "answer"}


class Action(BaseModel):
    """One `computer_use` call, validated against the schema's per-action requirements."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: ActionName
    coordinate: tuple[float, float] | None = None  # model grid, not pixels
    keys: list[str] | None = None
    text: str | None = None
    pixels: float | None = None
    time: float | None = Field(default=None, ge=0)
    status: Literal["success", "failure"] | None = None

    @model_validator(mode="after")
    def _required_fields(self) -> "Action":
        a = self.action
        if a in COORDINATE_REQUIRED and self.coordinate is None:
            raise ValueError(f"action={a} needs a coordinate")
        if a == "key" and not self.keys:
            raise ValueError("action=key needs a non-empty keys list")
        if a in ("type", "answer") and self.text is None:
            raise ValueError(f"action={a} needs text")
        if a in ("scroll", "hscroll") and self.pixels is None:
            raise ValueError(f"action={a} needs pixels")
        if a == "wait" and self.time is None:
            raise ValueError("action=wait needs time")
        if a == "terminate" and self.status is None:
            raise ValueError("action=terminate needs status")
        return self

    def arguments(self) -> dict:
        """The `arguments` object as the model writes it (None fields dropped)."""
        args = self.model_dump(exclude_none=True)
        if self.coordinate is not None:
            args["coordinate"] = [_plain_number(v) for v in self.coordinate]
        return args

    def tool_call_text(self) -> str:
        """The exact `<tool_call>` block Qwen3-VL emits for this action."""
        import json

        call = {"name": "computer_use", "arguments": self.arguments()}
        return "<tool_call>\n" + json.dumps(call, ensure_ascii=False) + "\n</tool_call>"


def _plain_number(v: float) -> int | float:
    return int(v) if float(v).is_integer() else v


class ActionOutcome(BaseModel):
    """What an executor reports after running an action."""

    model_config = ConfigDict(extra="forbid")

    ok: bool = True
    input_point: tuple[int, int] | None = None  # where the input device acted, in the executor's input space
    answer: str | None = None  # set by `answer`
    done: bool = False  # `terminate` or `answer` ended the task
    success: bool | None = None  # `terminate` status, None for non-final actions
    error: str | None = None
