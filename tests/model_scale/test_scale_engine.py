"""The serving engine on the MoE and FP8 checkpoints and at tensor-parallel size 2 (CPU gloo workers, the engine's
forward on every rank in lockstep): a concurrent mix of text and image requests gives each request generate()'s
greedy tokens of the same request alone on the TP=1 model."""

from __future__ import annotations

import pytest
import torch

from model import Qwen3VL
from model.engine import Engine, EngineConfig
from serving import picture

NEW = 16


def conversations():
    return [[{"role": "user", "content": "Tell me a story about a cat."}],
            [{"role": "user", "content": [{"type": "image", "image": picture(0)}, {"type": "text", "text": "What?"}]}],
            [{"role": "user", "content": [{"type": "image", "image": picture(1)},
                                          {"type": "image", "image": picture(2, 100, 60)},
                                          {"type": "text", "text": "Compare."}]}]]


def reference(model) -> list[list[int]]:
    return [model.generate(**model.preprocessor(c), max_new_tokens=NEW, eos_token_ids=[])[0].tolist()
            for c in conversations()]


def engine_tokens(model) -> list[list[int]]:
    # 32-token steps: prompts are chunked, and the chunks of different requests share steps with decodes
    eng = Engine(model, EngineConfig(max_num_batched_tokens=32, kv_cache_memory="64MiB", max_model_len=4096))
    try:
        handles = [eng.submit(eng.request(c, max_tokens=NEW, ignore_eos=True)) for c in conversations() * 2]
        return [h.result().token_ids for h in handles]
    finally:
        eng.close()


@pytest.mark.parametrize("kind", ["moe", "dense_fp8", "moe_fp8"])
def test_engine_equals_generate(kind, fp8_models):
    model = Qwen3VL.from_pretrained(fp8_models[kind], dtype=torch.float32)
    want = reference(model)
    assert len({tuple(w) for w in want}) == len(want)
    assert engine_tokens(model) == want * 2


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dense", "moe_fp8"])
def test_engine_at_tp2_equals_generate_at_tp1(kind, fp8_models):
    want = reference(Qwen3VL.from_pretrained(fp8_models[kind], dtype=torch.float32))
    two = Qwen3VL.from_pretrained(fp8_models[kind], dtype=torch.float32, tensor_parallel_size=2)
    try:
        assert two.worker_pids
        assert engine_tokens(two) == want * 2
        # generate() still works on the same workers after the engine closed
        assert two.generate(**two.preprocessor(conversations()[0]), max_new_tokens=NEW,
                            eos_token_ids=[])[0].tolist() == want[0]
    finally:
        two.close()
