"""Conversation history → the message list sent to the policy.

Layout (OSWorld's, used by both profiles): the last ``history_images`` steps are replayed as real turns —
user(screenshot) / assistant(reply) — the first of them carrying the instruction text, then the current
screenshot. Steps older than the window are listed as ``Step i: <Action line>`` in that instruction text.
``window="chunked"`` (an option; the sliding window above is what Qwen3-VL was trained with and the default)
shows between ``history_images // 2`` and ``history_images * 3 // 2`` past steps, dropping the oldest ones in one
chunk when the upper bound would be passed: the same number of screenshots on average, but a step's prompt then
starts with the whole previous prompt and reply (a serving engine's prefix cache reuses all of it) except at the
drops, where the sliding window changes the first user turn every step (benchmarks/bench_history.py measures
both). Replies are stored without ``<think>`` blocks (QwenLM/Qwen3-VL#1509: an empty think block fed back into
history derails later steps).

Messages use the Qwen/HF chat format with PIL images: ``{"type": "image", "image": PIL.Image}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from PIL import Image

from agent import prompts
from agent.actions import Action
from agent.parsing import ParsedResponse

# OSWorld's fallback history line is "Performing {pyautogui function} action".
_PYAUTOGUI_NAMES = {
    "left_click": "click", "right_click": "rightClick", "middle_click": "middleClick",
    "double_click": "doubleClick", "triple_click": "tripleClick", "type": "typewrite", "key": "hotkey",
    "scroll": "scroll", "hscroll": "hscroll", "mouse_move": "moveTo", "left_click_drag": "dragTo",
}


def action_line(parsed: ParsedResponse) -> str:
    """The history line of one step: the model's Action line, else OSWorld's fallback."""
    if parsed.action_line:
        return parsed.action_line
    a: Action | None = parsed.action
    if a is None:
        return "No valid action"
    return f"Performing {_PYAUTOGUI_NAMES.get(a.action, a.action)} action"


@dataclass
class Turn:
    screenshot: Image.Image  # what the model saw when it replied
    reply: str  # reply without reasoning
    action_line: str
    note: str | None = None  # told to the model with the next screenshot (e.g. "declined", "dry run")


@dataclass
class History:
    instruction: str
    profile: prompts.Profile = "qwen"
    history_images: int = 4
    turns: list[Turn] = field(default_factory=list)
    window: Literal["sliding", "chunked"] = "sliding"

    def window_size(self) -> int:
        """How many of the past turns the next prompt replays as real turns."""
        n, h = len(self.turns), self.history_images
        if h <= 0:
            return 0
        if self.window == "sliding":
            return min(n, h)
        low, high = h // 2, h + h // 2
        return n if n <= high else low + (n - low) % (high - low + 1)

    def add(self, screenshot: Image.Image, parsed: ParsedResponse, note: str | None = None) -> None:
        self.turns.append(Turn(screenshot, parsed.text, action_line(parsed), note))

    def messages(self, screenshot: Image.Image, failed_replies: list[tuple[str, str]] = ()) -> list[dict]:
        """Messages for the next policy call.

        ``failed_replies``: (reply, feedback) pairs of this step's unusable replies, appended after the
        current screenshot so the model sees its mistake.
        """
        size = self.window_size()
        window = self.turns[len(self.turns) - size:] if size else []
        older = self.turns[: len(self.turns) - len(window)]
        first_text = prompts.user_text(self.profile, self.instruction, [t.action_line for t in older])

        msgs: list[dict] = [prompts.system_message(self.profile)]
        shots = [t.screenshot for t in window] + [screenshot]
        notes = [None] + [t.note for t in window]  # a turn's note goes with the screenshot after it
        for i, shot in enumerate(shots):
            content: list[dict] = [{"type": "image", "image": shot}]
            if i == 0:
                content.append({"type": "text", "text": first_text})
            if notes[i]:
                content.append({"type": "text", "text": notes[i]})
            msgs.append({"role": "user", "content": content})
            if i < len(window):
                msgs.append({"role": "assistant", "content": [{"type": "text", "text": window[i].reply}]})
        for reply, feedback in failed_replies:
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": reply}]})
            msgs.append({"role": "user", "content": [{"type": "text", "text": feedback}]})
        return msgs
