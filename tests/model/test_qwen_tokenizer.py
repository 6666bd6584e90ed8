"""tests/qwen_tokenizer.py: the real Qwen BPE rebuilt from qwen.tiktoken gives the real token ids."""

from __future__ import annotations

import pytest

import qwen_tokenizer


@pytest.fixture(scope="module")
def tok():
    return qwen_tokenizer.build_tokenizer()   # qwen-agent (the ranks) is a [dev] dependency: never skipped


def test_real_qwen_ids(tok):
    assert tok("Hello world")["input_ids"] == [9707, 1879]
    ids = tok("<|im_start|>user\nHi<|im_end|>")["input_ids"]
    assert ids[0] == 151644 and ids[-1] == 151645 and len(ids) == 5
    assert tok.convert_tokens_to_ids(["<|image_pad|>", "<tool_call>", "</think>"]) == [151655, 151657, 151668]
    text = "Grüße, 世界! 12345 <tool_call>"
    assert tok.decode(tok(text)["input_ids"]) == text
    assert len(tok("a long English sentence")["input_ids"]) == 4   # merges work: one token per word, not bytes
