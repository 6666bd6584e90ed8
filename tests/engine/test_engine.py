"""The engine against `Qwen3VL.generate` (the parity reference) on the tiny float32 checkpoint: a concurrent mix of
text, image, two-image and video requests gives every request the greedy tokens it gets alone from generate, also
with prefill chunked into small steps, with prefix-cache hits and under KV-cache preemption; stopping rules,
seeds, refusals and cancellation."""

from __future__ import annotations

import threading

import pytest
import torch

from serving import picture
from model.engine import Engine, EngineConfig

NEW = 24


def conversations():
    frames = [picture(seed, 64, 96) for seed in range(4)]
    return [
        [{"role": "user", "content": "Tell me a story about a cat."}],
        [{"role": "user", "content": [{"type": "image", "image": picture(0)}, {"type": "text", "text": "What?"}]}],
        [{"role": "user", "content": [{"type": "image", "image": picture(1)},
                                      {"type": "image", "image": picture(2, 100, 60)},
                                      {"type": "text", "text": "Compare these two pictures, please."}]}],
        [{"role": "system", "content": "You describe videos."},
         {"role": "user", "content": [{"type": "video", "video": frames, "fps": 2.0},
                                      {"type": "text", "text": "What happens?"}]}],
        [{"role": "user", "content": "Hi"}],
    ]


@pytest.fixture(scope="module")
def reference(dense_model):
    """generate()'s greedy tokens for each conversation, run alone."""
    out = []
    for messages in conversations():
        ids = dense_model.generate(**dense_model.preprocessor(messages), max_new_tokens=NEW, eos_token_ids=[])
        out.append(ids[0].tolist())
    assert len({tuple(o) for o in out}) == len(out)
    return out


def run_all(engine: Engine, n_copies: int = 1, **sampling) -> list[list[int]]:
    convs = conversations() * n_copies
    handles = [engine.submit(engine.request(c, max_tokens=NEW, ignore_eos=True, temperature=0, **sampling))
               for c in convs]
    return [h.result().token_ids for h in handles]


def test_concurrent_mix_equals_generate_alone(engine, reference):
    before = engine.stats()
    got = run_all(engine, n_copies=2)
    assert got == reference * 2
    after = engine.stats()
    assert after.steps - before.steps < 2 * len(reference) * NEW / 2   # requests really were batched
    assert after.kv_blocks_free == after.kv_blocks and after.running == after.waiting == 0


def test_small_chunks_prefix_hits_and_preemption_keep_tokens(dense_model, reference):
    # 24-token steps chunk every prompt (and split images across steps); 40 blocks of 4 tokens cannot hold all
    # five requests at once, so the newest are preempted and recomputed
    eng = Engine(dense_model, EngineConfig(max_num_batched_tokens=24, block_size=4, kv_cache_memory=str(
        40 * 2 * 3 * 4 * 2 * 16 * 4), max_model_len=4096))
    try:
        assert eng.pool.num_blocks == 40
        assert run_all(eng) == reference
        stats = eng.stats()
        assert stats.num_preemptions > 0
        # run again: the prompts' full blocks that survived come from the prefix cache, tokens unchanged
        assert run_all(eng) == reference
        assert eng.stats().prefix_cache_hits > stats.prefix_cache_hits
    finally:
        eng.close()


def test_prefix_cache_hit_skips_prompt_and_encoder(engine, dense_model):
    messages = conversations()[2]
    first = engine.generate(engine.request(messages, max_tokens=8, temperature=0))
    calls = engine.stats().encoder_calls
    second = engine.generate(engine.request(messages, max_tokens=8, temperature=0))
    assert second.token_ids == first.token_ids
    assert second.cached_tokens >= second.prompt_tokens - engine.config.block_size
    assert engine.stats().encoder_calls == calls          # both images were inside the cached prefix


def test_encoder_cache_serves_an_image_at_a_new_position(engine):
    shot = picture(11, 90, 90)
    a = [{"role": "user", "content": [{"type": "image", "image": shot}, {"type": "text", "text": "one"}]}]
    b = [{"role": "user", "content": [{"type": "text", "text": "a different start, then"},
                                      {"type": "image", "image": shot}]}]
    engine.generate(engine.request(a, max_tokens=2))
    calls = engine.stats().encoder_calls
    out = engine.generate(engine.request(b, max_tokens=4, temperature=0))
    assert engine.stats().encoder_calls == calls          # same pixels: the cached features, not the encoder
    m = engine.model
    assert out.token_ids == m.generate(**m.preprocessor(b), max_new_tokens=4)[0].tolist()


def test_stop_rules(engine, reference):
    free = reference[0]
    # a stop token id: the output ends with it
    stop_id = next(t for i, t in enumerate(free) if i >= 3 and t not in free[:i])
    out = engine.generate(engine.request(conversations()[0], max_tokens=NEW, ignore_eos=True, stop_token_ids=[stop_id]))
    assert out.finish_reason == "stop" and out.token_ids == free[:free.index(stop_id) + 1]
    # max_tokens
    out = engine.generate(engine.request(conversations()[0], max_tokens=5, ignore_eos=True))
    assert out.finish_reason == "length" and out.token_ids == free[:5] and out.completion_tokens == 5
    # a stop string: the text ends before it
    full = engine.generate(engine.request(conversations()[0], max_tokens=NEW, ignore_eos=True)).text
    stop = full[len(full) // 2: len(full) // 2 + 3]
    out = engine.generate(engine.request(conversations()[0], max_tokens=NEW, ignore_eos=True, stop=[stop]))
    assert out.finish_reason == "stop" and out.text == full[:full.index(stop)]
    # streamed deltas add up to the whole text
    handle = engine.submit(engine.request(conversations()[1], max_tokens=NEW, ignore_eos=True))
    parts = list(handle)
    assert "".join(p.text for p in parts) == engine.model.preprocessor.decode(
        [t for p in parts for t in p.token_ids])
    assert [p.finished for p in parts] == [False] * (len(parts) - 1) + [True]


def test_seeded_sampling_is_reproducible_and_per_request(engine):
    def draw(seed):
        return engine.generate(engine.request(conversations()[0], max_tokens=12, temperature=1.0, top_k=50,
                                              seed=seed, ignore_eos=True)).token_ids

    assert draw(1) == draw(1) != draw(2)
    # a seeded request gives the same tokens while other requests share its batch
    handles = [engine.submit(engine.request(conversations()[i % 5], max_tokens=12, temperature=1.0, seed=1,
                                            ignore_eos=True, top_k=50)) for i in range(5)]
    assert handles[0].result().token_ids == draw(1)
    for h in handles[1:]:
        h.result()


def test_penalties_match_generate(engine, dense_model):
    messages = conversations()[0]
    want = dense_model.generate(**dense_model.preprocessor(messages), max_new_tokens=16, repetition_penalty=1.3,
                                presence_penalty=2.0, eos_token_ids=[])[0].tolist()
    got = engine.generate(engine.request(messages, max_tokens=16, repetition_penalty=1.3, presence_penalty=2.0,
                                         ignore_eos=True)).token_ids
    assert got == want


class Forced:
    """A TokenConstraint that allows exactly one token sequence."""

    def __init__(self, ids):
        self.ids, self.i = list(ids), 0

    def mask_logits(self, logits):
        allowed = self.ids[self.i] if self.i < len(self.ids) else 151645
        keep = logits[allowed].clone()
        logits.fill_(float("-inf"))
        logits[allowed] = keep

    def advance(self, token_id):
        assert token_id == (self.ids[self.i] if self.i < len(self.ids) else 151645)
        self.i += 1

    def is_finished(self):
        return self.i >= len(self.ids)


def test_constraint_masks_before_sampling(engine):
    tok = engine.model.preprocessor.tokenizer
    ids = tok('{"ok": true}', add_special_tokens=False)["input_ids"]
    out = engine.generate(engine.request(conversations()[0], max_tokens=40, temperature=0.8, seed=3,
                                         constraint=Forced(ids)))
    assert out.text == '{"ok": true}' and out.finish_reason == "stop"


def test_requests_that_cannot_fit_are_refused(dense_model, engine):
    small = Engine(dense_model, EngineConfig(block_size=16, kv_cache_memory=str(4 * 2 * 3 * 16 * 2 * 16 * 4),
                                             max_model_len=1000))
    try:
        with pytest.raises(ValueError, match=r"needs \d+ KV-cache blocks .* whole cache holds 4 blocks"):
            small.submit(small.request(conversations()[0], max_tokens=100))
        with pytest.raises(ValueError, match="maximum context length is 1000"):
            small.submit(small.request(conversations()[0], max_tokens=990))
        assert small.generate(small.request(conversations()[4], max_tokens=4)).finish_reason == "length"
    finally:
        small.close()
    with pytest.raises(ValueError, match="temperature"):
        engine.submit(engine.request(conversations()[0], temperature=-1))


def test_cancel_frees_blocks_at_once(engine):
    handle = engine.submit(engine.request(conversations()[0], max_tokens=2000, ignore_eos=True))
    first = next(iter(handle))
    assert not first.finished
    handle.cancel()
    last = list(handle)[-1]
    assert last.finished and last.finish_reason == "abort"
    stats = engine.stats()
    assert stats.kv_blocks_free == stats.kv_blocks and stats.running == 0


def test_submit_from_many_threads(engine, reference):
    results = {}

    def worker(i):
        c = conversations()[i % 5]
        results[i] = engine.generate(engine.request(c, max_tokens=NEW, ignore_eos=True)).token_ids

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [results[i] for i in range(10)] == [reference[i % 5] for i in range(10)]
