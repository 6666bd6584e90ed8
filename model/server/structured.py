"""Structured output for the API: `response_format` (json_object / json_schema) and `tool_choice` "required" or a
named function become a grammar constraint (llguidance, through model/constraints.py) on the request's decoding."""

from __future__ import annotations

import json

from model.server.protocol import APIError, ChatCompletionRequest


COMPACT = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
TRAINED_SEPARATORS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}  # json.dumps


def _call_schema(request: ChatCompletionRequest) -> dict:
    """JSON schema of one Hermes call {"name", "arguments"} to any allowed tool."""
    tools = request.tools
    if not isinstance(request.tool_choice, str):   # a named function
        name = request.tool_choice.function.get("name")
        tools = [t for t in tools if t.function.name == name]
        if not tools:
            raise APIError(400, f"tool_choice names the function {name!r}, which is not in tools", param="tool_choice")
    return {"anyOf": [{"type": "object", "properties": {"name": {"const": t.function.name},
                                                         "arguments": t.function.parameters or {"type": "object"}},
                       "required": ["name", "arguments"]} for t in tools]}


def constraint_for(request: ChatCompletionRequest, tokenizer, vocab_size: int, eos_ids: list[int]):
    """The request's grammar constraint, or None when it asks for free text."""
    fmt = request.response_format
    wants_json = fmt is not None and fmt.type != "text"
    wants_call = bool(request.tools) and request.tool_choice not in (None, "auto", "none")
    if not (wants_json or wants_call):
        return None
    try:
        import llguidance

        from model.constraints import GrammarConstraint, ll_tokenizer_for, tag_atom, tool_call_lark
    except ImportError as e:
        raise APIError(400, f"structured output needs grammar-constrained decoding, unavailable here ({e})",
                       param="response_format" if wants_json else "tool_choice") from None
    if wants_json:
        schema = {"type": "object"} if fmt.type == "json_object" else (fmt.json_schema or {}).get("schema")
        if not isinstance(schema, dict):
            raise APIError(400, "response_format json_schema needs json_schema.schema (an object)",
                           param="response_format")
        # compact JSON unless the schema says otherwise: no free whitespace, so the output stays bounded
        grammar = f"start: %json {json.dumps({'x-guidance': COMPACT, **schema})}\n"
    else:
        grammar = tool_call_lark({"x-guidance": TRAINED_SEPARATORS, **_call_schema(request)},
                                 tag_atom(tokenizer, "<tool_call>"), tag_atom(tokenizer, "</tool_call>"),
                                 max_thought_chars=0)
    ll_tokenizer = ll_tokenizer_for(tokenizer, vocab_size, eos_ids)
    error = llguidance.LLMatcher.validate_grammar(grammar, ll_tokenizer)
    if error:
        raise APIError(400, f"the schema cannot be used for constrained decoding: {error}",
                       param="response_format" if wants_json else "tools")
    return GrammarConstraint(llguidance.LLMatcher(ll_tokenizer, grammar), vocab_size)
