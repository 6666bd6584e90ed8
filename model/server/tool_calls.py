"""Qwen's Hermes-style tool calls, `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, as OpenAI
`tool_calls` (vLLM's `hermes` parser): the text before the first tag is the content; when any call does not parse
as JSON with a name, nothing is taken as a call and the raw text is the content."""

from __future__ import annotations

import json
import re
import uuid

TOOL_CALL_START = "<tool_call>"
_CALL = re.compile(r"<tool_call>(.*?)</tool_call>|<tool_call>(.*)", re.DOTALL)


def parse_tool_calls(text: str) -> tuple[str | None, list[dict]]:
    """Model text -> (content or None, OpenAI tool_calls [{id, type, function: {name, arguments (a JSON string)}}])."""
    if TOOL_CALL_START not in text:
        return text, []
    calls = []
    for m in _CALL.finditer(text):
        body = (m.group(1) if m.group(1) is not None else m.group(2)).strip()
        try:
            call = json.loads(body)
        except json.JSONDecodeError:
            return text, []
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return text, []
        args = call.get("arguments", call.get("parameters", {}))
        arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        calls.append({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                      "function": {"name": call["name"], "arguments": arguments}})
    content = text[:text.index(TOOL_CALL_START)].strip()
    return content or None, calls
