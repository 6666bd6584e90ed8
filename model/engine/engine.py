"""`Engine`: one model serving many requests at once, from any thread.

`submit(request)` validates the request in the caller's thread (ValueError for one that can never run) and returns
a `RequestHandle` that yields `EngineOutput` deltas: iterate it (blocking) or `async for` it (when submitted with
`loop=`). One background thread owns the scheduler, the caches and the model: each iteration admits new requests
and cancellations, schedules one step, runs it and hands every request its new tokens; a finished or cancelled
request leaves the batch at once and frees its KV blocks.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import traceback
from dataclasses import dataclass

import torch

from model.engine.block_pool import BlockPool
from model.engine.encoder_cache import EncoderCache
from model.engine.inputs import request_from_messages
from model.engine.kv_cache import PagedKVCache, kv_cache_bytes
from model.engine.request import Detokenizer, EngineOutput, EngineRequest, RequestMetrics, SamplingOptions
from model.engine.runner import ModelRunner, local_kv_heads, prompt_positions
from model.engine.sampler import record, sample
from model.engine.scheduler import Scheduler, Sequence


@dataclass
class EngineConfig:
    max_model_len: int | None = None       # default: the checkpoint's max_position_embeddings, at most the cache
    max_num_seqs: int = 32
    max_num_batched_tokens: int = 2048     # per-step token budget: the prefill chunk size
    block_size: int = 16
    kv_cache_memory: str | float = 0.25    # a size ("4GiB") or a fraction of the free memory
    encoder_cache_embeds: int = 16384      # vision embeddings kept by content hash
    prefix_caching: bool = True


@dataclass
class EngineStats:
    running: int
    waiting: int
    kv_blocks: int
    kv_blocks_free: int
    kv_usage: float
    block_size: int
    prefix_cache_queries: int      # prompt tokens looked up (first admission of each request)
    prefix_cache_hits: int         # of which served from the cache
    encoder_calls: int             # images/videos run through the vision encoder
    encoder_cache_hits: int
    num_preemptions: int
    steps: int
    prompt_tokens: int             # computed (not cached) prompt tokens
    generation_tokens: int


class EngineDead(RuntimeError):
    """The engine's loop stopped (closed, or the model failed); no request can be served any more."""


class RequestHandle:
    """The outputs of one submitted request, in order; the last one has `finished=True`."""

    def __init__(self, engine: "Engine", request_id: str, loop: asyncio.AbstractEventLoop | None):
        self.engine = engine
        self.request_id = request_id
        self._loop = loop
        self._queue: queue.Queue | asyncio.Queue = asyncio.Queue() if loop is not None else queue.Queue()
        self.done = False

    def _put(self, output: EngineOutput) -> None:
        if self._loop is None:
            self._queue.put(output)
        else:
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, output)
            except RuntimeError:   # the caller's event loop is closed: nobody is listening any more
                pass

    def cancel(self) -> None:
        self.engine.cancel(self.request_id)

    def __iter__(self):
        while not self.done:
            out = self._queue.get()
            self.done = out.finished
            yield out

    async def __aiter__(self):
        while not self.done:
            out = await self._queue.get()
            self.done = out.finished
            yield out

    def result(self) -> EngineOutput:
        """Wait for the end; one output with all tokens and text (blocking handles only)."""
        ids, text, last = [], [], None
        for out in self:
            ids += out.token_ids
            text.append(out.text)
            last = out
        last.token_ids, last.text = ids, "".join(text)
        return last


class Engine:
    def __init__(self, model, config: EngineConfig | None = None):
        self.model = model
        self.config = cfg = config or EngineConfig()
        t = model.config.text
        if cfg.block_size < 1 or cfg.max_num_seqs < 1 or cfg.max_num_batched_tokens < 1:
            raise ValueError("block_size, max_num_seqs and max_num_batched_tokens must be positive")
        per_block = PagedKVCache.bytes_per_block(t.num_hidden_layers, cfg.block_size, local_kv_heads(model),
                                                 t.head_dim, model.dtype)
        budget = kv_cache_bytes(cfg.kv_cache_memory, model.device)
        num_blocks = budget // per_block
        if num_blocks < 1:
            raise ValueError(f"--kv-cache-memory {cfg.kv_cache_memory}: {budget} bytes hold no KV block "
                             f"({per_block} bytes per block of {cfg.block_size} tokens)")
        # default context: the checkpoint's, but no longer than the whole cache holds (as vLLM)
        self.max_model_len = cfg.max_model_len or min(t.max_position_embeddings, num_blocks * cfg.block_size)
        # never more blocks than every sequence slot filled to max_model_len could use
        num_blocks = min(num_blocks, cfg.max_num_seqs * -(-self.max_model_len // cfg.block_size))
        self.kv_bytes = num_blocks * per_block
        self.pool = BlockPool(num_blocks)
        self.encoder_cache = EncoderCache(cfg.encoder_cache_embeds)
        self.runner = ModelRunner(model, num_blocks, cfg.block_size, self.encoder_cache)
        self.scheduler = Scheduler(self.pool, cfg.block_size, cfg.max_num_seqs, cfg.max_num_batched_tokens,
                                   cfg.prefix_caching)
        self.scheduler.on_preempt = lambda seq: self.encoder_cache.release(seq.request_id)
        self.eos_token_ids = set(model.eos_token_ids)
        self.tokenizer = model.preprocessor.tokenizer if model.source is not None else None
        self._inbox: queue.Queue = queue.Queue()
        self._handles: dict[str, RequestHandle] = {}
        self._seqs: dict[str, Sequence] = {}
        self._lock = threading.Lock()
        self.steps = self.prompt_tokens = self.generation_tokens = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="qvl-engine", daemon=True)
        self._thread.start()

    @classmethod
    def from_pretrained(cls, path, dtype=torch.bfloat16, device="cpu", tensor_parallel_size: int | None = None,
                        progress=None, **config) -> "Engine":
        from model.generate import Qwen3VL

        model = Qwen3VL.from_pretrained(path, dtype=dtype, device=device, tensor_parallel_size=tensor_parallel_size,
                                        progress=progress)
        try:
            return cls(model, EngineConfig(**config))
        except BaseException:
            model.close()
            raise

    @property
    def max_tokens_in_cache(self) -> int:
        return self.pool.num_blocks * self.config.block_size

    # ------------------------------------------------------------------ the caller's side

    def request(self, messages: list[dict], tools: list[dict] | None = None, constraint=None, request_id: str = "",
                **sampling) -> EngineRequest:
        """An EngineRequest from chat messages (Qwen/OpenAI format) and SamplingOptions fields."""
        return request_from_messages(self.model.preprocessor, self.model.config, messages,
                                     SamplingOptions(**sampling), tools, constraint, request_id)

    def validate(self, request: EngineRequest) -> None:
        """ValueError when the request can never run (too long for max_model_len or for the whole KV cache)."""
        s = request.sampling.check()
        n = len(request.prompt_token_ids)
        if n == 0:
            raise ValueError("the prompt is empty")
        if n > self.max_model_len:
            raise ValueError(f"the prompt has {n} tokens, more than the maximum context length "
                             f"{self.max_model_len} (--max-model-len)")
        if n + s.max_tokens > self.max_model_len:
            raise ValueError(f"'max_tokens' or 'max_completion_tokens' is too large: {s.max_tokens}. This model's "
                             f"maximum context length is {self.max_model_len} tokens and your request has {n} input "
                             f"tokens ({s.max_tokens} > {self.max_model_len} - {n})")
        need = -(-(n + s.max_tokens) // self.config.block_size)
        if need > self.pool.num_blocks:
            raise ValueError(f"the request needs {need} KV-cache blocks ({n} prompt + {s.max_tokens} max_tokens "
                             f"tokens) but the whole cache holds {self.pool.num_blocks} blocks "
                             f"({self.max_tokens_in_cache} tokens); raise --kv-cache-memory or lower max_tokens")
        vocab = self.model.config.text.vocab_size
        bad = [t for t in request.prompt_token_ids if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"prompt token id {bad[0]} is outside the vocabulary (0..{vocab - 1})")

    def submit(self, request: EngineRequest, loop: asyncio.AbstractEventLoop | None = None) -> RequestHandle:
        if self.error is not None or self._stop.is_set():
            raise EngineDead(self.error or "the engine is closed")
        self.validate(request)
        with self._lock:
            if request.request_id in self._handles:
                raise ValueError(f"request id {request.request_id!r} is already running")
            handle = self._handles[request.request_id] = RequestHandle(self, request.request_id, loop)
        self._inbox.put(("add", request))
        return handle

    def generate(self, request: EngineRequest) -> EngineOutput:
        """Submit and wait: the whole output."""
        return self.submit(request).result()

    def cancel(self, request_id: str) -> None:
        self._inbox.put(("cancel", request_id))

    def stats(self) -> EngineStats:
        s = self.scheduler
        return EngineStats(len(s.running), len(s.waiting), self.pool.num_blocks, self.pool.num_free,
                           self.pool.usage(), self.config.block_size, s.prefix_queries, s.prefix_hits,
                           self.runner.encoder_calls, self.encoder_cache.hits, s.num_preemptions, self.steps,
                           self.prompt_tokens, self.generation_tokens)

    def close(self, drain: bool = False, timeout: float | None = None) -> None:
        """Stop the loop: after the running and waiting requests finish (drain) or cancelling them."""
        if drain:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._handles and self.error is None and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.02)
        self._stop.set()
        self._inbox.put(("wake", None))
        self._thread.join(timeout=30)
        self.runner.close()

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> None:
        try:
            with torch.inference_mode():
                self._run()
        except Exception as e:  # the model failed: every request gets the error, the engine refuses new ones
            self.error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            for rid in list(self._seqs):
                self._finish(self._seqs[rid], "abort" if self.error is None else "error", error=self.error)
            while True:   # requests submitted after the loop ended
                try:
                    kind, item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if kind == "add":
                    self._fail(item.request_id, self.error or "the engine is closed")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._take_inbox(block=not self.scheduler.has_work)
            if self._stop.is_set():
                break
            chunks = self.scheduler.schedule()
            if not chunks:
                if self.scheduler.has_work:   # nothing fits right now (should not last): do not spin
                    time.sleep(0.001)
                continue
            logits = self.runner.execute(chunks)
            self.steps += 1
            self._after_step(chunks, logits)

    def _take_inbox(self, block: bool) -> None:
        while True:
            try:
                kind, item = self._inbox.get(timeout=0.5) if block else self._inbox.get_nowait()
            except queue.Empty:
                return
            block = False
            if kind == "add":
                try:
                    self._add(item)
                except Exception as e:   # noqa: BLE001 - a request the model cannot take fails alone
                    self._fail(item.request_id, f"{type(e).__name__}: {e}")
            elif kind == "cancel":
                seq = self._seqs.get(item)
                if seq is not None:
                    self._finish(seq, "abort")
            elif kind == "wake":
                return

    def _add(self, request: EngineRequest) -> None:
        positions, delta = prompt_positions(self.model, request.prompt_token_ids, request.mm_items)
        s = request.sampling
        generator = None
        if s.seed is not None and s.temperature > 0:
            generator = torch.Generator(device=self.model.device).manual_seed(s.seed)
        detok = Detokenizer(self.tokenizer, s.skip_special_tokens) if self.tokenizer is not None else None
        seq = Sequence(request, list(request.prompt_token_ids), len(request.prompt_token_ids), positions, delta,
                       detok, generator=generator)
        self._seqs[request.request_id] = seq
        self.scheduler.waiting.append(seq)

    def _fail(self, request_id: str, error: str) -> None:
        with self._lock:
            handle = self._handles.pop(request_id, None)
        if handle is not None:
            handle._put(EngineOutput(request_id, [], "", True, "error", error=error))

    def _after_step(self, chunks, logits) -> None:
        now = time.monotonic()
        sampling = [c for c in chunks if c.samples]
        for c in chunks:
            c.seq.num_computed += c.count
            self.scheduler.register_computed(c.seq)
            if c.seq.num_computed <= c.seq.num_prompt:
                self.prompt_tokens += c.count
        tokens = sample([c.seq for c in sampling], logits) if sampling else []
        for c, token in zip(sampling, tokens):
            seq = c.seq
            record(seq, token)
            seq.tokens.append(token)
            self.generation_tokens += 1
            if seq.first_token is None:
                seq.first_token = now
            self._emit(seq, token)

    def _emit(self, seq: Sequence, token: int) -> None:
        s = seq.request.sampling
        reason = None
        if (token in self.eos_token_ids and not s.ignore_eos) or token in s.stop_token_ids:
            reason = "stop"
        text_end = None
        if seq.detok is not None and reason is None:   # an eos / stop token's own text is not output (vLLM)
            seq.detok.add(token)
            if s.stop:
                text = seq.detok.text
                # a stop string may end inside the new text or straddle the previous delta
                begin = max(0, seq.emitted_text - max(map(len, s.stop)) + 1)
                hits = [i for i in (text.find(stop, begin) for stop in s.stop) if i >= 0]
                if hits:
                    reason, text_end = "stop", min(hits)
        n_out = len(seq.tokens) - seq.num_prompt
        if reason is None and (n_out >= s.max_tokens or len(seq.tokens) >= self.max_model_len):
            reason = "length"
        if reason is None:
            handle = self._handles.get(seq.request_id)
            if handle is not None:
                handle._put(self._delta(seq, [token], hold_back=max(map(len, s.stop), default=1) - 1))
            return
        self._finish(seq, reason, last_token=token, text_end=text_end)

    def _delta(self, seq: Sequence, token_ids: list[int], hold_back: int = 0, text_end: int | None = None,
               final: bool = False) -> EngineOutput:
        text = ""
        if seq.detok is not None:
            full = seq.detok.text
            end = len(full) if text_end is None else text_end
            if not final:
                end = max(seq.emitted_text, end - hold_back)
            text = full[seq.emitted_text:end]
            seq.emitted_text = max(seq.emitted_text, end)
        return EngineOutput(seq.request_id, token_ids, text, prompt_tokens=seq.num_prompt,
                            cached_tokens=seq.num_cached_prompt, completion_tokens=len(seq.output_ids))

    def _finish(self, seq: Sequence, reason: str, last_token: int | None = None, text_end: int | None = None,
                error: str | None = None) -> None:
        self.scheduler.remove(seq)
        self.encoder_cache.release(seq.request_id)
        self._seqs.pop(seq.request_id, None)
        with self._lock:
            handle = self._handles.pop(seq.request_id, None)
        if handle is None:
            return
        if seq.detok is not None and text_end is None:
            seq.detok.flush()
        out = self._delta(seq, [] if last_token is None else [last_token], text_end=text_end, final=True)
        out.finished, out.finish_reason, out.error = True, reason, error
        r = seq.request
        out.metrics = RequestMetrics(r.arrival_time, seq.first_scheduled, seq.first_token, time.monotonic())
        handle._put(out)
