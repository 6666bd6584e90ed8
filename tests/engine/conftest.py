"""Engine and server fixtures on the tiny float32 checkpoints: one model, one engine and one in-process server
per session."""

from __future__ import annotations

import pytest
import torch

import tiny_checkpoints
from model import Qwen3VL
from model.engine import Engine, EngineConfig
from serving import serve


@pytest.fixture(scope="session")
def dense_path(tmp_path_factory):
    return tiny_checkpoints.checkpoint("dense_untied", tmp_path_factory)


@pytest.fixture(scope="session")
def dense_model(dense_path) -> Qwen3VL:
    return Qwen3VL.from_pretrained(dense_path, dtype=torch.float32)


@pytest.fixture(scope="session")
def engine(dense_model):
    eng = Engine(dense_model, EngineConfig(max_num_seqs=32, max_num_batched_tokens=512, kv_cache_memory="256MiB",
                                           max_model_len=16384))
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def server(engine):
    live = serve(engine)
    yield live
    live.stop()
