"""Grammar-constrained decoding (model/constraints.py) with the real Qwen BPE tokenizer: what the grammar lets
through, what it masks, the hook in Qwen3VL.generate, and sampled replies of a tiny random checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

import qwen_tokenizer
import tiny_checkpoints
from agent.actions import Action
from agent.parsing import parse_response
from model.constraints import ACTIONS, ToolCallGrammar

V = 151936  # the model's vocabulary (the tokenizer has 151669 entries)
EOS = [151645, 151643]


@pytest.fixture(scope="module")
def tok():
    return qwen_tokenizer.build_tokenizer()


@pytest.fixture(scope="module")
def grammar(tok):
    return ToolCallGrammar(tok, V, EOS)


def call(args: dict) -> str:
    return "<tool_call>\n" + json.dumps({"name": "computer_use", "arguments": args}, ensure_ascii=False) + "\n</tool_call>"


def walk(grammar, tok, text: str, eos: bool = True):
    """Feed the tokenizer's encoding of `text` (+ eos) through a fresh constraint; (constraint, first refused
    token index or None)."""
    c = grammar.constraint()
    ids = tok.encode(text, add_special_tokens=False) + ([EOS[0]] if eos else [])
    for n, t in enumerate(ids):
        row = torch.zeros(V)
        c.mask_logits(row)
        if row[t] != 0:
            return c, n
        c.advance(t)
    return c, None


VALID = [
    "Action: Click the search bar.\n" + call({"action": "left_click", "coordinate": [447, 81]}),
    call({"action": "left_click"}),
    call({"action": "type", "text": "héllo \"quoted\" <b> 点击"}),
    call({"action": "key", "keys": ["ctrl", "shift", "t"]}),
    call({"action": "scroll", "pixels": -5}),
    call({"action": "scroll", "pixels": 3, "coordinate": [500, 500]}),
    call({"action": "wait", "time": 2.5}),
    call({"action": "terminate", "status": "failure"}),
    call({"action": "answer", "text": "Lisbon"}),
    call({"action": "mouse_move", "coordinate": [0, 1000]}),
    call({"action": "left_click_drag", "coordinate": [10, 20]}),
    "Thought: done.\nAction: Finish.\n" + call({"action": "terminate", "status": "success"}),
]


@pytest.mark.parametrize("reply", VALID)
def test_replies_the_model_writes_pass_and_parse_to_the_same_action(grammar, tok, reply):
    c, refused = walk(grammar, tok, reply)
    assert refused is None and c.is_finished()
    assert parse_response(reply).error is None


INVALID = [
    call({"action": "fly", "coordinate": [1, 2]}),                   # not in the enum
    call({"action": "left_click", "coordinate": [1001, 5]}),         # off the 0..1000 grid
    call({"action": "left_click", "coordinate": [5]}),               # one number
    call({"action": "left_click", "coordinate": [1.5, 2]}),          # not integers
    call({"action": "key"}),                                         # keys required
    call({"action": "key", "keys": []}),                             # at least one key
    call({"action": "key", "keys": [""]}),                           # non-empty names
    call({"action": "type"}),                                        # text required
    call({"action": "mouse_move"}),                                  # coordinate required
    call({"action": "terminate", "status": "done"}),                 # status enum
    call({"action": "wait", "time": 1, "extra": 1}),                 # no other fields
    '<tool_call>\n{"name": "browser_use", "arguments": {"action": "wait", "time": 1}}\n</tool_call>',
    '<tool_call>\n{"name":"computer_use","arguments":{"action":"wait","time":1}}\n</tool_call>',  # not json.dumps' spacing
    "I think the answer is 42.",                                     # no call
    "<think>\nhmm\n</think>\n\n" + call({"action": "wait", "time": 1}),  # '<' is not free text
]


@pytest.mark.parametrize("reply", INVALID)
def test_replies_outside_the_schema_are_masked(grammar, tok, reply):
    c, refused = walk(grammar, tok, reply)
    assert refused is not None and not c.is_finished()


def test_after_the_action_name_only_schema_actions_can_follow(grammar, tok):
    c, refused = walk(grammar, tok, '<tool_call>\n{"name": "computer_use", "arguments": {"action": "', eos=False)
    assert refused is None
    row = torch.zeros(V)
    c.mask_logits(row)
    allowed = [tok.decode([t]) for t in (row == 0).nonzero().squeeze(-1).tolist()]
    assert allowed and all(any(a.startswith(p) for a in ACTIONS) for p in allowed)
    assert all(row[t] == float("-inf") for t in tok.encode("fly", add_special_tokens=False)[:1])
    # the rows past the tokenizer (151669..151935) are never allowed
    assert torch.isinf(row[len(tok):]).all()


def test_once_the_call_is_closed_only_eos_may_follow(grammar, tok):
    c, refused = walk(grammar, tok, call({"action": "wait", "time": 1}), eos=False)
    assert refused is None and c.is_finished()
    row = torch.zeros(V)
    c.mask_logits(row)
    assert set((row == 0).nonzero().squeeze(-1).tolist()) == set(EOS)  # the checkpoint's eos ids
    c.advance(EOS[0])
    other = grammar.constraint()
    with pytest.raises(ValueError, match="outside the grammar"):
        other.advance(tok.encode("<", add_special_tokens=False)[0])  # free text has no '<'


def test_profile_grid_and_limits(tok):
    small = ToolCallGrammar(tok, V, EOS, grid_max=999, max_thought_chars=0, max_text_chars=4)
    assert walk(small, tok, call({"action": "left_click", "coordinate": [999, 0]}))[1] is None
    assert walk(small, tok, call({"action": "left_click", "coordinate": [1000, 0]}))[1] is not None
    assert walk(small, tok, call({"action": "type", "text": "abcd"}))[1] is None
    assert walk(small, tok, call({"action": "type", "text": "abcde"}))[1] is not None
    assert walk(small, tok, "Action: x\n" + call({"action": "wait", "time": 1}))[1] is not None


def test_wrong_vocabulary_width_is_a_clear_error(grammar):
    with pytest.raises(ValueError, match="vocabulary of 151936"):
        grammar.constraint().mask_logits(torch.zeros(1000))


# ---------------------------------------------------------------- sampling from a tiny random checkpoint

@pytest.fixture(scope="module")
def bpe_model(tmp_path_factory):
    from model import Qwen3VL

    path = tiny_checkpoints.checkpoint("dense_qwen_bpe", tmp_path_factory)
    return Qwen3VL.from_pretrained(str(path), dtype=torch.float32)


def prompt_ids(model, rows: int):
    # random weights: what the prompt says does not matter, and a short one keeps 200 samples quick
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Open the settings"}]}]
    ids = model.preprocessor(msgs, add_generation_prompt=True)["input_ids"]  # [1, L]
    return ids.expand(rows, -1).contiguous()


def sample(model, constrained: bool, rows: int, seed: int, max_new_tokens: int) -> tuple[list[str], list[bool]]:
    grammar = ToolCallGrammar(model.preprocessor.tokenizer, model.config.text.vocab_size, model.eos_token_ids,
                              max_thought_chars=40, max_text_chars=24, max_keys=3,
                              max_key_chars=8) if constrained else None
    constraints = [grammar.constraint() for _ in range(rows)] if constrained else None
    out = model.generate(prompt_ids(model, rows), max_new_tokens=max_new_tokens, temperature=1.0, seed=seed,
                         constraints=constraints)
    texts, ended = [], []
    for row in out.tolist():
        ended.append(any(t in model.eos_token_ids for t in row))
        texts.append(model.preprocessor.decode([t for t in row if t not in model.eos_token_ids]))
    if constrained:
        assert all(c.is_finished() for c, e in zip(constraints, ended) if e)
    return texts, ended


@pytest.mark.slow
def test_constrained_sampling_at_temperature_1_always_gives_a_valid_action(bpe_model):
    """≥ 200 replies sampled at temperature 1.0 from random weights: every constrained one ends with eos and
    parses as an action (benchmarks/bench_constraints.py prints the rates and the overhead)."""
    valid = 0
    for seed in range(4):
        texts, ended = sample(bpe_model, True, rows=50, seed=seed, max_new_tokens=320)
        for text, e in zip(texts, ended):
            parsed = parse_response(text)
            assert e and parsed.error is None and isinstance(parsed.action, Action), text
            valid += 1
    assert valid == 200
    texts, ended = sample(bpe_model, False, rows=20, seed=0, max_new_tokens=64)
    assert sum(parse_response(t).error is None for t in texts) < 20  # random weights rarely write a call


def test_generate_without_constraints_is_unchanged(bpe_model):
    ids = prompt_ids(bpe_model, 2)
    a = bpe_model.generate(ids, max_new_tokens=6)
    b = bpe_model.generate(ids, max_new_tokens=6, constraints=[None, None])
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="one entry per row"):
        bpe_model.generate(ids, max_new_tokens=2, constraints=[None])


def test_embedded_policy_is_constrained_by_default(bpe_model, tmp_path_factory):
    from agent.policies import EmbeddedPolicy

    path = tiny_checkpoints.checkpoint("dense_qwen_bpe", tmp_path_factory)
    policy = EmbeddedPolicy(str(path), dtype=torch.float32, device="cpu", max_new_tokens=320, temperature=1.0,
                            seed=3)
    msgs = prompt_msgs()
    reply = policy.respond(msgs)
    assert reply.finish_reason == "stop" and parse_response(reply.text).error is None, reply.text
    free = EmbeddedPolicy(str(path), dtype=torch.float32, device="cpu", max_new_tokens=8, constrained=False)
    cut = free.respond(msgs)
    assert cut.finish_reason == "length" and cut.tokens_out == 8  # random weights do not stop within 8 tokens


def prompt_msgs():
    from agent import prompts

    return [prompts.system_message("qwen"), {"role": "user", "content": [{"type": "text", "text": "Open it"}]}]
