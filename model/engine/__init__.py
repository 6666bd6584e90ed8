"""The serving engine under `qvl-agent serve` and the embedded policy: continuous batching with chunked prefill,
a paged KV cache with prefix caching, an encoder cache, per-request sampling (shared/docs/engine.md).

    from model.engine import Engine
    engine = Engine.from_pretrained(path, max_num_seqs=16)
    out = engine.generate(engine.request(messages, max_tokens=64))

Modules: request (inputs/outputs), inputs (messages -> request), block_pool (blocks, hashes, LRU), kv_cache
(paged tensors, attention of one step), encoder_cache, scheduler, sampler, runner (one step on the model),
engine (the thread-safe loop)."""

from model.engine.engine import Engine, EngineConfig, EngineDead, EngineStats, RequestHandle
from model.engine.request import EngineOutput, EngineRequest, MultiModalItem, SamplingOptions, TokenConstraint

__all__ = ["Engine", "EngineConfig", "EngineDead", "EngineStats", "RequestHandle", "EngineOutput", "EngineRequest",
           "MultiModalItem", "SamplingOptions", "TokenConstraint"]
