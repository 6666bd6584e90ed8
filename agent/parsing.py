"""Qwen3-VL replies → typed `Action`s, never guessing. Pure functions, no I/O, never raise.

Order of reading (Qwen-Agent's ``NousFnCallPrompt.postprocess_fncall_messages`` and OSWorld's
``qwen3vl_agent.parse_response`` are the references):

1. Reasoning first. The first ``</think>`` ends it: everything before it is reasoning, even without an
   opening ``<think>`` (a thinking model's generation prompt opens the block, QwenLM/Qwen3-VL#1504), so a
   ``<tool_call>`` drafted inside reasoning is never read. A reply that opens ``<think>`` and never closes
   it was cut off inside its reasoning: no action.
2. Text before the first ``<tool_call>`` is the thought; its ``Action:`` line is kept (OSWorld's history).
3. Every ``<tool_call>`` is read in order. Its body must be one complete JSON (or JSON5, as Qwen-Agent
   reads it) object; the only repair is a missing ``</tool_call>`` after a complete object. A body that
   would need a string, number or bracket closed was cut off or is malformed: that call and every call
   after it are not actions (executing the calls before it is what the model asked for; guessing the rest
   is not). Without any tag, a bare ``{"name": …, "arguments": …}`` object counts (OSWorld does that).
4. The call must be ``computer_use`` with ``arguments`` that satisfy the tool schema. OSWorld's key-array
   cleanup (``["keys=['ctrl'", "'c']"]`` → ``["ctrl", "c"]``), numeric strings (``"300"``) and a chord
   string (``"ctrl+s"``) are read as written; nothing else is reinterpreted.

``lenient=True`` (``qvl-agent run --lenient-parse``) additionally accepts what other GUI agents' habits
produce but neither reference executes: bare ``{"action": …}`` objects, a missing ``name``, action and
status aliases (``click`` → ``left_click``, ``done`` → ``success``), ``key`` for ``keys``, a 4-number box
(its centre) or a point hidden in a string. It is off by default for every profile: the ``qwen`` and
``osworld`` prompts define the exact interface, and an alias match is a guess at what a differently
prompted model meant.

Whatever is not an action comes back as an ``error`` sentence meant for the model.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import json5
from pydantic import ValidationError

from agent.actions import ACTION_NAMES, Action

TOOL_NAME = "computer_use"
OPEN, CLOSE = "<tool_call>", "</tool_call>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# lenient only: names other GUI agents use for the schema's actions
ACTION_ALIASES = {
    "click": "left_click", "tap": "left_click", "drag": "left_click_drag", "press": "key", "hotkey": "key",
    "key_press": "key", "typing": "type", "input": "type", "move": "mouse_move", "doubleclick": "double_click",
    "rightclick": "right_click",
}
STATUS_ALIASES = {
    "succeeded": "success", "done": "success", "completed": "success", "complete": "success",
    "fail": "failure", "failed": "failure", "infeasible": "failure", "error": "failure",
}
_JSON_ERRORS = (ValueError, TypeError, RecursionError, OverflowError, IndexError, KeyError, AttributeError)


@dataclass(frozen=True)
class ParsedResponse:
    raw: str
    text: str  # the reply without reasoning (what history keeps)
    thought: str  # text before the first tool call
    action_line: str | None  # OSWorld's "Action: …" line
    actions: tuple[Action, ...] = ()  # every readable call, in order, up to the first unreadable one
    error: str | None = None  # set when no action could be read
    reasoning: str | None = None  # content of the <think> block
    call_errors: tuple[str, ...] = field(default=())  # the first unreadable call (calls after it are not read)
    cut_off: bool = False  # a call or the reasoning ends unfinished: the reply was truncated

    @property
    def action(self) -> Action | None:
        return self.actions[0] if self.actions else None


class _CallError(Exception):
    pass


def split_reasoning(text: str) -> tuple[str, str | None, bool]:
    """(reply without reasoning, reasoning or None, reasoning left unclosed)."""
    if THINK_CLOSE in text:
        head, _, reply = text.partition(THINK_CLOSE)
        head = head.lstrip()
        if head.startswith(THINK_OPEN):
            head = head[len(THINK_OPEN):]
        return reply.strip(), head.strip() or None, False
    if text.lstrip().startswith(THINK_OPEN):
        return "", text.lstrip()[len(THINK_OPEN):].strip() or None, True
    return text.strip(), None, False


def _action_line(text: str) -> str | None:
    for line in text.splitlines():
        line = line.strip()
        if line.lower().startswith("action:"):
            return line[len("action:"):].strip() or None
    return None


def parse_response(raw: str, *, lenient: bool = False) -> ParsedResponse:
    """Read a model reply. Never raises; ``error`` says what was wrong when no action came out."""
    if not isinstance(raw, str):
        raw = "" if raw is None else str(raw)
    text, reasoning, unclosed = split_reasoning(raw)
    if unclosed:
        return ParsedResponse(raw=raw, text="", thought="", action_line=None, reasoning=reasoning, cut_off=True,
                              error="the reply ended inside its reasoning (<think> was never closed), "
                                    "before any tool call")
    calls, first, failure, cut_off = _calls(text, lenient)
    thought = (text if first < 0 else text[:first]).strip()
    actions: list[Action] = []
    for call in calls:
        try:
            actions.append(_to_action(call, lenient))
        except _CallError as e:  # this call comes before any that _calls stopped at
            failure, cut_off = str(e), False
            break
    error = None
    if not actions:
        error = failure or ("the reply was empty" if not text else "no <tool_call> block found")
    return ParsedResponse(raw=raw, text=text, thought=thought, action_line=_action_line(thought) or _action_line(text),
                          actions=tuple(actions), error=error, reasoning=reasoning,
                          call_errors=(failure,) if failure else (), cut_off=cut_off)


# ---------------------------------------------------------------- finding the calls

def _object_end(s: str, start: int) -> tuple[int, bool]:
    """From the '{' at ``start``: (index after the matching '}', True), or (where reading stopped, False)
    when the text ends, or a tool-call tag appears outside a string, before the object closes."""
    depth = 0
    in_str: str | None = None
    escaped = False
    for i in range(start, len(s)):
        ch = s[i]
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == in_str:
                in_str = None
            continue
        if ch in "\"'":
            in_str = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1, True
        elif ch == "<" and (s.startswith(CLOSE, i) or s.startswith(OPEN, i)):
            return i, False
    return len(s), False


def _loads(s: str):
    try:
        return json.loads(s)
    except _JSON_ERRORS:
        pass
    try:
        return json5.loads(s)
    except _JSON_ERRORS:
        return None


def _snippet(s: str) -> str:
    s = s.strip().replace("\n", " ")
    return repr(s[:120] + ("…" if len(s) > 120 else ""))


_LINE_OBJECT = re.compile(r"(?m)^[ \t]*\{")


def _bare_call(text: str, start: int, stop: int, lenient: bool) -> tuple[int, int, dict] | None:
    """The first complete object in text[start:stop] that begins a line and is a call
    ({"name": …, "arguments": …}; lenient: also {"action": …}), as (start, end, object)."""
    for m in _LINE_OBJECT.finditer(text, start, stop):
        i = m.end() - 1
        end, complete = _object_end(text, i)
        obj = _loads(text[i:end]) if complete else None
        if isinstance(obj, dict) and (("name" in obj and "arguments" in obj) or (lenient and "action" in obj)):
            return i, end, obj
    return None


def _calls(text: str, lenient: bool) -> tuple[list[dict], int, str | None, bool]:
    """(calls in reply order, where the first one starts, why reading stopped or None, whether it stopped
    at a cut-off call). Calls are <tool_call> blocks and, as OSWorld reads them, untagged call objects that
    begin a line."""
    calls: list[dict] = []
    first = -1
    pos = 0
    while True:
        tag = text.find(OPEN, pos)
        bare = _bare_call(text, pos, len(text) if tag < 0 else tag, lenient)
        if bare is not None:
            first = bare[0] if first < 0 else first
            calls.append(bare[2])
            pos = bare[1]
            continue
        if tag < 0:
            return calls, first, None, False
        first = tag if first < 0 else first
        i = tag + len(OPEN)
        while i < len(text) and text[i].isspace():
            i += 1
        if text.startswith("```", i):  # a Markdown fence inside the tag: ```json
            i += 3 + (4 if text[i + 3:i + 7].lower() == "json" else 0)
            while i < len(text) and text[i].isspace():
                i += 1
        if i >= len(text):
            return calls, first, "the reply ended right after <tool_call>: the call was cut off", True
        if text[i] != "{":
            return calls, first, f"<tool_call> must contain one JSON object, got {_snippet(text[i:i + 80])}", False
        end, complete = _object_end(text, i)
        if not complete:
            if end >= len(text):
                return calls, first, f"the tool call was cut off before its JSON object closed: " \
                                     f"{_snippet(text[i:])}", True
            return calls, first, f"the tool call's JSON object is not closed before {text[end:end + 12]!r}: " \
                                 f"{_snippet(text[i:end])}", False
        obj = _loads(text[i:end])
        if not isinstance(obj, dict):
            return calls, first, f"the tool call is not valid JSON: {_snippet(text[i:end])}", False
        calls.append(obj)
        # Text between the object and its </tool_call> (a closing fence, stray words) is not part of the call;
        # a missing </tool_call> is the one repair. Either way the call is the complete object, so a prefix
        # of the reply never reads a call differently from the whole reply.
        nxt_close, nxt_open = text.find(CLOSE, end), text.find(OPEN, end)
        pos = nxt_close + len(CLOSE) if nxt_close >= 0 and (nxt_open < 0 or nxt_close < nxt_open) else end


# ---------------------------------------------------------------- arguments → Action

def _number(value, what: str) -> float:
    if isinstance(value, bool):
        raise _CallError(f"{what} must be a number, got {value!r}")
    try:
        if isinstance(value, (int, float)):
            x = float(value)
        elif isinstance(value, str):
            x = float(value.strip())
        else:
            raise ValueError
    except (ValueError, OverflowError):  # OverflowError: an integer beyond float range
        raise _CallError(f"{what} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(x):
        raise _CallError(f"{what} must be finite, got {value!r}")
    return x


def _point(value, lenient: bool) -> tuple[float, float]:
    if isinstance(value, str):
        loaded = _loads(value) if value.strip().startswith("[") else None
        if isinstance(loaded, list):
            value = loaded
        elif lenient:
            value = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", value)]
    if lenient and isinstance(value, dict):
        value = [value.get("x"), value.get("y")]
    if lenient and isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], (list, tuple, str)):
        return _point(value[0], lenient)
    sizes = (2, 4) if lenient else (2,)
    if not isinstance(value, (list, tuple)) or len(value) not in sizes:
        raise _CallError(f"coordinate must be [x, y], got {value!r}")
    nums = [_number(v, "coordinate") for v in value]
    if len(nums) == 4:  # lenient: a box [x1, y1, x2, y2] → its centre
        return ((nums[0] + nums[2]) / 2, (nums[1] + nums[3]) / 2)
    return (nums[0], nums[1])


def _clean_key(key: str) -> str:
    # OSWorld's cleanup of keys=['ctrl', 'c'] emitted as strings inside the array.
    k = key.strip()
    if k.startswith("keys="):
        k = k[5:]
    return k.strip().strip("[]").strip().strip("'\"").strip()


def _keys(value, lenient: bool) -> list[str]:
    if isinstance(value, str):
        loaded = _loads(value) if value.strip().startswith("[") else None
        if isinstance(loaded, list):
            value = loaded
        else:  # one key, or a chord written "ctrl+shift+t"
            value = [p for p in re.split(r"\s*\+\s*", value.strip()) if p] if "+" in value.strip("+ ") else [value]
    if not isinstance(value, (list, tuple)):
        raise _CallError(f"keys must be a list of key names, got {value!r}")
    keys = []
    for k in value:
        if isinstance(k, (list, tuple)) and lenient:
            keys.extend(_keys(list(k), lenient))
            continue
        if not isinstance(k, str):
            if not lenient:
                raise _CallError(f"keys must be key names (strings), got {k!r}")
            k = str(k)
        parts = [_clean_key(p) for p in k.split(",")] if k.strip().startswith(("[", "keys=")) else [_clean_key(k)]
        keys.extend(p for p in parts if p)
    return keys


def _action_name(raw, lenient: bool) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise _CallError("the arguments have no \"action\"")
    action = raw.strip()
    if lenient and action not in ACTION_NAMES:
        action = action.lower().replace("-", "_").replace(" ", "_")
        action = ACTION_ALIASES.get(action, ACTION_ALIASES.get(action.replace("_", ""), action))
    if action not in ACTION_NAMES:
        raise _CallError(f"unknown action {raw!r}; valid actions: {', '.join(ACTION_NAMES)}")
    return action


def _to_action(call: dict, lenient: bool) -> Action:
    name = call.get("name")
    if "arguments" in call:
        args = call["arguments"]
    elif lenient and "action" in call:
        args = {k: v for k, v in call.items() if k != "name"}
    else:
        raise _CallError("the tool call has no \"arguments\"")
    if name != TOOL_NAME and not (lenient and name is None):
        raise _CallError(f"unknown function {name!r}; the only tool is {TOOL_NAME!r}")
    if isinstance(args, str):  # OpenAI tool_calls style: the arguments as a JSON string
        s = args.strip()
        end, complete = _object_end(s, 0) if s.startswith("{") else (0, False)
        args = _loads(s) if complete and end == len(s) else None
    if not isinstance(args, dict):
        raise _CallError(f"\"arguments\" must be a JSON object, got {str(call['arguments'])[:80]!r}")
    action = _action_name(args.get("action"), lenient)

    fields: dict = {"action": action}
    if args.get("coordinate") is not None:
        fields["coordinate"] = _point(args["coordinate"], lenient)
    if args.get("keys") is not None:
        fields["keys"] = _keys(args["keys"], lenient)
    elif lenient and action == "key" and isinstance(args.get("key"), (str, list)):
        fields["keys"] = _keys(args["key"], lenient)
    if args.get("text") is not None:
        t = args["text"]
        if not isinstance(t, str) and not lenient:
            raise _CallError(f"text must be a string, got {t!r}")
        fields["text"] = t if isinstance(t, str) else json.dumps(t, ensure_ascii=False)
    if args.get("pixels") is not None:
        fields["pixels"] = _number(args["pixels"], "pixels")
    if args.get("time") is not None:
        fields["time"] = _number(args["time"], "time")
    if args.get("status") is not None:
        st = str(args["status"]).strip().lower()
        fields["status"] = STATUS_ALIASES.get(st, st) if lenient else st
    try:
        return Action(**fields)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "arguments"
        msg = first.get("msg", "invalid").removeprefix("Value error, ")
        raise _CallError(f"invalid {action} call ({loc}: {msg})") from None
