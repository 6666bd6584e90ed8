"""Tolerant parsing of Qwen3-VL replies into typed `Action`s. Pure functions, no I/O, never raise.

Rules follow Qwen-Agent's ``NousFnCallPrompt.postprocess_fncall_messages``:

* ``<think>…</think>`` is reasoning, not part of the reply (a lone ``</think>`` ends reasoning that the
  generation prompt opened);
* text before the first ``<tool_call>`` is the thought; an ``Action:`` line in it is captured (OSWorld);
* a ``<tool_call>`` without ``</tool_call>`` runs to the end of the text (truncated/streamed output);
* JSON is read leniently: ``json`` → ``json5`` → bracket repair → Qwen-Agent's ``extract_fn`` fallback;
* without any ``<tool_call>`` tag, a bare ``{"name": …, "arguments": …}`` object is accepted (OSWorld);
* malformed key arrays are cleaned as OSWorld does (``["keys=['ctrl'", "'c']"]`` → ``["ctrl", "c"]``).

Anything that does not yield an `Action` comes back as ``error`` text meant for the model.
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

# Names the model sometimes uses for the schema's actions (mobile_use / other GUI agents).
ACTION_ALIASES = {
    "click": "left_click",
    "tap": "left_click",
    "drag": "left_click_drag",
    "press": "key",
    "hotkey": "key",
    "key_press": "key",
    "typing": "type",
    "input": "type",
    "move": "mouse_move",
    "doubleclick": "double_click",
    "rightclick": "right_click",
}
STATUS_ALIASES = {
    "success": "success", "succeeded": "success", "done": "success", "completed": "success", "complete": "success",
    "failure": "failure", "fail": "failure", "failed": "failure", "infeasible": "failure", "error": "failure",
}
_OBJECT_START = re.compile(r"\{\s*[\"']")
_JSON_ERRORS = (ValueError, TypeError, RecursionError, OverflowError, IndexError, KeyError, AttributeError)


@dataclass(frozen=True)
class ParsedResponse:
    raw: str
    text: str  # the reply without reasoning (what history keeps)
    thought: str  # text before the first tool call
    action_line: str | None  # OSWorld's "Action: …" line
    actions: tuple[Action, ...] = ()
    error: str | None = None  # set when no action could be read
    reasoning: str | None = None  # content of <think> blocks
    call_errors: tuple[str, ...] = field(default=())  # per tool call that failed (others may have parsed)

    @property
    def action(self) -> Action | None:
        return self.actions[0] if self.actions else None


class _CallError(Exception):
    pass


def strip_think(text: str) -> tuple[str, str | None]:
    """(reply without reasoning, reasoning or None). Reasoning precedes the answer, so only the text before
    the first ``<tool_call>`` is searched: a ``type`` call may legitimately contain "<think>"."""
    cut = text.find("<tool_call>")
    head, tail = (text, "") if cut < 0 else (text[:cut], text[cut:])
    reasoning: list[str] = []
    if "</think>" in head:
        before, _, head = head.rpartition("</think>")
        reasoning.append(before.replace("<think>", ""))

    def _grab(m: re.Match) -> str:
        reasoning.append(m.group(1))
        return ""

    head = re.sub(r"<think>(.*?)</think>", _grab, head, flags=re.S).replace("<think>", "")
    joined = "\n".join(r.strip() for r in reasoning if r.strip())
    return (head + tail).strip(), (joined or None)


def _action_line(text: str) -> str | None:
    for line in text.splitlines():
        line = line.strip()
        if line.lower().startswith("action:"):
            value = line[len("action:"):].strip()
            return value or None
    return None


def parse_response(raw: str) -> ParsedResponse:
    """Read a model reply. Never raises; ``error`` says what was wrong when no action came out."""
    if not isinstance(raw, str):
        raw = "" if raw is None else str(raw)
    text, reasoning = strip_think(raw)
    if "<tool_call>" in text:
        thought = text[: text.find("<tool_call>")].strip()
        bodies = _tagged_bodies(text)
    else:
        found = _bare_json_objects(text)
        thought = (text[: found[0][0]] if found else text).strip()
        bodies = [span for _, span in found]
    action_line = _action_line(thought) or _action_line(text)

    actions: list[Action] = []
    errors: list[str] = []
    for body in bodies:
        try:
            actions.append(_to_action(_load_call(body)))
        except _CallError as e:
            errors.append(str(e))
    error = None
    if not actions:
        if errors:
            error = errors[0]
        elif not text.strip():
            error = "the reply was empty"
        else:
            error = "no <tool_call> block found"
    return ParsedResponse(raw=raw, text=text, thought=thought, action_line=action_line, actions=tuple(actions),
                          error=error, reasoning=reasoning, call_errors=tuple(errors))


# ---------------------------------------------------------------- JSON

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def _tagged_bodies(text: str) -> list[str]:
    """The JSON text of each ``<tool_call>``. A complete object is taken whole, so a tag inside one of its
    strings (``type`` of "<tool_call>") does not cut it; otherwise the body runs to ``</tool_call>`` or the
    end of the text (a truncated call, or one missing a closing brace)."""
    bodies: list[str] = []
    pos = text.find(OPEN)
    while pos >= 0:
        start = pos + len(OPEN)
        close = text.find(CLOSE, start)
        stop = close if close >= 0 else len(text)
        brace = text.find("{", start)
        lead = text[start:brace].strip() if brace >= 0 else None
        body, end = text[start:stop], stop + (len(CLOSE) if close >= 0 else 0)
        if lead in ("", "```", "```json"):
            obj, complete = _object_span(text[brace:])
            if complete and isinstance(_loads(obj), dict):
                body, end = obj, brace + len(obj)
        if body.strip():
            bodies.append(body)
        pos = text.find(OPEN, end)
    return bodies


def _loads(s: str):
    try:
        return json.loads(s)
    except _JSON_ERRORS:
        pass
    try:
        return json5.loads(s)
    except _JSON_ERRORS:
        return None


def _strip_fences(s: str) -> str:
    s = s.strip()
    if s.startswith("```"):
        s = s[3:]
        if s[:4].lower() == "json":
            s = s[4:]
        s = s.rsplit("```", 1)[0] if "```" in s else s
    return s.strip()


def _object_span(s: str) -> tuple[str, bool]:
    """From the first '{' of ``s``: (the first complete object, True), or (the rest of ``s`` with the
    missing closers appended, False). Braces inside strings do not count."""
    start = s.find("{")
    if start < 0:
        return s, False
    stack: list[str] = []
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
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if stack and stack[-1] == ch:
                stack.pop()
            if not stack:
                return s[start: i + 1], True
    tail = s[start:].rstrip().rstrip(",")
    if in_str:
        tail += in_str
    return tail + "".join(reversed(stack)), False


def _balanced_prefix(s: str) -> str:
    return _object_span(s)[0]


def _extract_fn(text: str) -> dict | None:
    """Qwen-Agent's last resort: find '"name": "' and '"arguments": ' by position."""
    m = re.search(r'"name"\s*:\s*"([^"]*)"', text)
    k = re.search(r'"arguments"\s*:\s*', text)
    if not m or not k:
        return None
    args = _loads(_balanced_prefix(text[k.end():]))
    if not isinstance(args, dict):
        return None
    return {"name": m.group(1), "arguments": args}


def _load_call(body: str) -> dict:
    s = _strip_fences(body)
    obj = _loads(s)
    if not isinstance(obj, dict):
        obj = _loads(_balanced_prefix(s))
    if not isinstance(obj, dict):
        obj = _extract_fn(s)
    if not isinstance(obj, dict):
        snippet = s.strip().replace("\n", " ")
        snippet = snippet[:120] + ("…" if len(snippet) > 120 else "")
        raise _CallError(f"the tool call is not valid JSON: {snippet!r}")
    return obj


def _bare_json_objects(text: str) -> list[tuple[int, str]]:
    """(start, span) of {...} objects that look like a tool call (for replies without <tool_call> tags)."""
    found: list[tuple[int, str]] = []
    i = text.find("{")
    while i >= 0 and len(found) < 8:
        # cheap checks first: replies can be long and brace-heavy (reasoning, code)
        if not _OBJECT_START.match(text, i):
            i = text.find("{", i + 1)
            continue
        span = _balanced_prefix(text[i:])
        obj = _loads(span) if "action" in span else None
        if isinstance(obj, dict) and (("name" in obj and "arguments" in obj) or "action" in obj):
            found.append((i, span))
            i = text.find("{", i + max(len(span), 1))
        else:
            i = text.find("{", i + 1)
    return found


# ---------------------------------------------------------------- arguments → Action

def _number(value, what: str) -> float:
    if isinstance(value, bool):
        raise _CallError(f"{what} must be a number, got {value!r}")
    try:
        if isinstance(value, (int, float)):
            x = float(value)
        elif isinstance(value, str):
            x = float(value.strip().strip("'\""))
        else:
            raise ValueError
    except (ValueError, OverflowError):  # OverflowError: an integer beyond float range
        raise _CallError(f"{what} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(x):
        raise _CallError(f"{what} must be finite, got {value!r}")
    return x


def _point(value) -> tuple[float, float]:
    if isinstance(value, str):
        nums = re.findall(r"-?\d+(?:\.\d+)?", value)
        value = [float(n) for n in nums]
    if isinstance(value, dict):
        value = [value.get("x"), value.get("y")]
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], (list, tuple, str)):
        return _point(value[0])
    if not isinstance(value, (list, tuple)) or len(value) not in (2, 4):
        raise _CallError(f"coordinate must be [x, y], got {value!r}")
    nums = [_number(v, "coordinate") for v in value]
    if len(nums) == 4:  # a box [x1, y1, x2, y2]: act on its centre
        return ((nums[0] + nums[2]) / 2, (nums[1] + nums[3]) / 2)
    return (nums[0], nums[1])


def _clean_key(key: str) -> str:
    # OSWorld's cleanup of keys=['ctrl', 'c'] emitted as strings inside the array.
    k = key.strip()
    if k.startswith("keys="):
        k = k[5:]
    return k.strip().strip("[]").strip().strip("'\"").strip()


def _keys(value) -> list[str]:
    if isinstance(value, str):
        loaded = _loads(value) if value.strip().startswith("[") else None
        if isinstance(loaded, list):
            value = loaded
        else:
            value = [p for p in re.split(r"\s*\+\s*", value.strip()) if p] if "+" in value.strip("+ ") else [value]
    if not isinstance(value, (list, tuple)):
        raise _CallError(f"keys must be a list of key names, got {value!r}")
    keys = []
    for k in value:
        if isinstance(k, (list, tuple)):
            keys.extend(_keys(list(k)))
            continue
        if not isinstance(k, str):
            k = str(k)
        parts = [_clean_key(p) for p in k.split(",")] if k.strip().startswith(("[", "keys=")) else [_clean_key(k)]
        keys.extend(p for p in parts if p)
    return keys


def _to_action(call: dict) -> Action:
    name = call.get("name")
    if "arguments" in call:
        args = call["arguments"]
    elif "action" in call:
        args = {k: v for k, v in call.items() if k != "name"}
    else:
        raise _CallError("the tool call has no \"arguments\"")
    if name is not None and name != TOOL_NAME:
        raise _CallError(f"unknown function {name!r}; the only tool is {TOOL_NAME!r}")
    if isinstance(args, str):
        loaded = _loads(_balanced_prefix(args))
        args = loaded
    if not isinstance(args, dict):
        raise _CallError(f"\"arguments\" must be an object, got {args!r}")
    raw_action = args.get("action")
    if not isinstance(raw_action, str) or not raw_action.strip():
        raise _CallError("the arguments have no \"action\"")
    action = raw_action.strip().lower().replace("-", "_").replace(" ", "_")
    if action not in ACTION_NAMES:
        action = ACTION_ALIASES.get(action, ACTION_ALIASES.get(action.replace("_", ""), action))
    if action not in ACTION_NAMES:
        raise _CallError(f"unknown action {raw_action!r}; valid actions: {', '.join(ACTION_NAMES)}")

    fields: dict = {"action": action}
    if args.get("coordinate") is not None:
        fields["coordinate"] = _point(args["coordinate"])
    if args.get("keys") is not None:
        fields["keys"] = _keys(args["keys"])
    elif action == "key" and isinstance(args.get("key"), (str, list)):
        fields["keys"] = _keys(args["key"])
    if args.get("text") is not None:
        t = args["text"]
        fields["text"] = t if isinstance(t, str) else json.dumps(t, ensure_ascii=False)
    if args.get("pixels") is not None:
        fields["pixels"] = _number(args["pixels"], "pixels")
    if args.get("time") is not None:
        fields["time"] = _number(args["time"], "time")
    if args.get("status") is not None:
        st = str(args["status"]).strip().lower()
        fields["status"] = STATUS_ALIASES.get(st, st)
    try:
        return Action(**fields)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "arguments"
        msg = first.get("msg", "invalid").removeprefix("Value error, ")
        raise _CallError(f"invalid {action} call ({loc}: {msg})") from None
