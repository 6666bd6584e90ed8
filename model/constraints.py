"""Grammar-constrained decoding: per-row token masks that keep a reply inside a grammar.

A `TokenConstraint` is stepped by the sampler (model/generate.py, the engine): before each token it masks
the row's logits (disallowed tokens -> -inf), after it is told which token was chosen. It never picks a
token itself, so greedy, temperature and top-p sampling, penalties and seeds behave as without it, only
over the allowed tokens.

`ToolCallGrammar` builds the constraint for Qwen3-VL's ``computer_use`` reply:

    [free text, e.g. "Action: ...\\n"]  <tool_call> \\n {"name": "computer_use", "arguments": {...}} \\n </tool_call>  eos

where the arguments satisfy the tool schema per action (the action enum, the fields each action requires,
a coordinate of two integers in 0..grid_max, non-empty key names, the status enum) and are written the way
the model was trained to write them (``json.dumps`` separators, ``action`` first). Lengths are bounded
(thought, text, keys), so a constrained reply always ends within a known token budget.

Library: llguidance (Microsoft's Rust grammar engine; the one llama.cpp, vLLM and SGLang also ship). It
compiles a grammar lazily (~10 ms, so limits and the grid range can be per request), has no dependencies
(xgrammar pulls triton and tvm-ffi), and its mask costs ~1 ms a token with the real 151,643-token Qwen BPE
on a loaded 2-core CPU (benchmarks/bench_constraints.py measures it against the decode step and against
xgrammar when installed). The tokenizer conversion (~5 s) happens once per tokenizer.
"""

from __future__ import annotations

import json
import weakref
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

ACTIONS = ("key", "type", "mouse_move", "left_click", "left_click_drag", "right_click", "middle_click",
           "double_click", "triple_click", "scroll", "hscroll", "wait", "terminate", "answer")
CLICKS = ("left_click", "right_click", "middle_click", "double_click", "triple_click")


class TokenConstraint(Protocol):
    def mask_logits(self, logits: Tensor) -> None:
        """logits [V] fp32 row (V = model vocab, may exceed the tokenizer's), in place: disallowed -> -inf."""

    def advance(self, token_id: int) -> None:
        """The token chosen for this row (must have been allowed)."""

    def is_finished(self) -> bool:
        """The reply is complete: nothing but the end (eos) may follow."""


# ----------------------------------------------------------------------------------------- schema


def computer_use_schema(grid_max: int = 1000, max_text_chars: int = 2000, max_keys: int = 8,
                        max_key_chars: int = 32) -> dict:
    """JSON schema of one ``{"name": "computer_use", "arguments": {...}}`` call, one branch per action."""
    coordinate = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": grid_max},
                  "minItems": 2, "maxItems": 2}
    text = {"type": "string", "maxLength": max_text_chars}
    keys = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": max_key_chars},
            "minItems": 1, "maxItems": max_keys}
    pixels = {"type": "integer", "minimum": -100000, "maximum": 100000}  # wheel clicks (pyautogui.scroll)
    seconds = {"type": "number", "minimum": 0, "maximum": 3600}

    def branch(action: str, required: tuple[str, ...] = (), **props) -> dict:
        return {"type": "object", "properties": {"action": {"const": action}, **props},
                "required": ["action", *required], "additionalProperties": False}

    branches = [branch("key", ("keys",), keys=keys), branch("type", ("text",), text=text),
                branch("mouse_move", ("coordinate",), coordinate=coordinate),
                branch("left_click_drag", ("coordinate",), coordinate=coordinate)]
    branches += [branch(a, (), coordinate=coordinate) for a in CLICKS]  # no coordinate: where the cursor is
    branches += [branch(a, ("pixels",), pixels=pixels, coordinate=coordinate) for a in ("scroll", "hscroll")]
    branches += [branch("wait", ("time",), time=seconds),
                 branch("terminate", ("status",), status={"enum": ["success", "failure"]}),
                 branch("answer", ("text",), text=text)]
    assert {b["properties"]["action"]["const"] for b in branches} == set(ACTIONS)
    return {"type": "object", "properties": {"name": {"const": "computer_use"}, "arguments": {"anyOf": branches}},
            "required": ["name", "arguments"], "additionalProperties": False,
            # the separators json.dumps writes, as in the model's training data; no free whitespace
            "x-guidance": {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}}


def tool_call_lark(schema: dict, open_tag: str, close_tag: str, max_thought_chars: int = 600) -> str:
    """llguidance Lark grammar: optional free text without '<', the tagged call, then the end of the reply.
    open_tag/close_tag are grammar atoms: the tokenizer's single token (``<[151657]>``) or a quoted literal."""
    thought = f"THOUGHT: /[^<]{{1,{max_thought_chars}}}/\n" if max_thought_chars > 0 else ""
    return (f'start: {"THOUGHT? " if thought else ""}{open_tag} "\\n" call "\\n" {close_tag}\n'
            f"{thought}call: %json {json.dumps(schema)}\n")


# ----------------------------------------------------------------------------------------- llguidance

_LL_TOKENIZERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def ll_tokenizer_for(hf_tokenizer, vocab_size: int, eos_ids: list[int]):
    """llguidance's view of a transformers tokenizer, built once per (tokenizer, vocabulary, eos ids):
    building it walks the whole vocabulary."""
    import llguidance.hf

    per_tok = _LL_TOKENIZERS.setdefault(hf_tokenizer, {})
    key = (vocab_size, tuple(eos_ids))
    if key not in per_tok:
        per_tok[key] = llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=vocab_size, eos_token=list(eos_ids))
    return per_tok[key]


class GrammarConstraint:
    """A TokenConstraint over one llguidance matcher (one per generated row)."""

    def __init__(self, matcher, vocab_size: int):
        self.matcher = matcher
        self.vocab_size = vocab_size
        self._words = torch.zeros((vocab_size + 31) // 32, dtype=torch.int32)   # the bitmask, bit t = token t

    def disallowed(self) -> Tensor:
        """bool [V]: the tokens the grammar does not allow next."""
        self.matcher.unsafe_compute_mask_ptr(self._words.data_ptr(), self._words.numel() * 4)
        # unpack the inverted words: one 0/1 byte per token, viewed as bool without a copy
        bits = np.unpackbits((~self._words.numpy()).view(np.uint8), bitorder="little")[: self.vocab_size]
        return torch.from_numpy(bits).view(torch.bool)

    def mask_logits(self, logits: Tensor) -> None:
        if logits.shape != (self.vocab_size,):
            raise ValueError(f"the constraint was built for a vocabulary of {self.vocab_size} tokens, "
                             f"got logits of shape {tuple(logits.shape)}")
        logits.masked_fill_(self.disallowed().to(logits.device, non_blocking=True), float("-inf"))

    def advance(self, token_id: int) -> None:
        if not self.matcher.consume_token(int(token_id)):
            raise ValueError(f"token {int(token_id)} is outside the grammar: {self.matcher.get_error()}")

    def is_finished(self) -> bool:
        return self.matcher.is_stopped()


class ToolCallGrammar:
    """The computer_use reply grammar for one tokenizer; `constraint()` gives a fresh per-row constraint.

    hf_tokenizer: the checkpoint's transformers tokenizer; vocab_size: the model's vocabulary (logits
    width, e.g. 151936 for 151669 tokenizer entries); eos_ids: the tokens that end a reply."""

    def __init__(self, hf_tokenizer, vocab_size: int, eos_ids: list[int], *, grid_max: int = 1000,
                 max_thought_chars: int = 600, max_text_chars: int = 2000, max_keys: int = 8, max_key_chars: int = 32):
        import llguidance

        self.vocab_size = vocab_size
        self.tokenizer = ll_tokenizer_for(hf_tokenizer, vocab_size, eos_ids)
        self.grammar = tool_call_lark(computer_use_schema(grid_max, max_text_chars, max_keys, max_key_chars),
                                      tag_atom(hf_tokenizer, "<tool_call>"), tag_atom(hf_tokenizer, "</tool_call>"),
                                      max_thought_chars)
        error = llguidance.LLMatcher.validate_grammar(self.grammar, self.tokenizer)
        if error:
            raise ValueError(f"the tool-call grammar does not compile: {error}")
        self._llguidance = llguidance

    def constraint(self) -> GrammarConstraint:
        return GrammarConstraint(self._llguidance.LLMatcher(self.tokenizer, self.grammar), self.vocab_size)


def tag_atom(hf_tokenizer, tag: str) -> str:
    """Qwen tokenizers have <tool_call> / </tool_call> as single added tokens, which llguidance matches by
    id only; a tokenizer without them spells the tag out."""
    ids = hf_tokenizer.encode(tag, add_special_tokens=False)
    return f"<[{ids[0]}]>" if len(ids) == 1 else json.dumps(tag)
