"""Continuous batching over a token budget (vLLM v1's scheduler, design doc §0.1): every step each running request
gets the tokens it still lacks (one for a decoding request, up to the remaining budget for a prefill, which is
therefore chunked), then waiting requests are admitted while budget, sequence slots and KV blocks last. A new
request starts after its longest cached prefix. When blocks run out the newest running request is preempted: its
blocks are freed (they keep their hashes, so it usually re-hits its own prefix) and it waits at the front again."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import torch
from torch import Tensor

from model.engine.block_pool import BlockPool, extend_block_hashes
from model.engine.request import Detokenizer, EngineRequest, MultiModalItem


@dataclass(eq=False)   # identity: compared by `in` over queues
class Sequence:
    """The engine's state of one request."""

    request: EngineRequest
    tokens: list[int]                       # prompt + output so far
    num_prompt: int
    positions: Tensor                       # [3, num_prompt] M-RoPE positions of the prompt
    rope_delta: int                         # output token i (i >= num_prompt) has position i + rope_delta
    detok: Detokenizer
    num_computed: int = 0                   # tokens whose keys/values are in the cache
    block_ids: list[int] = field(default_factory=list)
    block_hashes: list[bytes] = field(default_factory=list)    # of the full blocks of `tokens`, in order
    slot_table: Tensor | None = None        # KV slots of block_ids, extended by the runner (None once freed)
    num_registered: int = 0                 # leading blocks registered in the prefix cache
    num_cached_prompt: int = 0              # prompt tokens that came from the prefix cache (first admission)
    admitted: bool = False
    generator: torch.Generator | None = None
    seen: Tensor | None = None              # [V] bool, prompt + output (repetition penalty)
    counts: Tensor | None = None            # [V] fp32, output token counts (presence / frequency penalty)
    emitted_text: int = 0                   # characters of detok.text already sent
    finish_reason: str | None = None
    first_scheduled: float | None = None
    first_token: float | None = None

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def output_ids(self) -> list[int]:
        return self.tokens[self.num_prompt:]

    @property
    def mm_items(self) -> list[MultiModalItem]:
        return self.request.mm_items


@dataclass
class Chunk:
    """`count` tokens of `seq` starting at token `start` are computed this step."""

    seq: Sequence
    start: int
    count: int

    @property
    def samples(self) -> bool:      # the chunk reaches the end of the known tokens: a new token is sampled
        return self.start + self.count == len(self.seq.tokens)


class Scheduler:
    def __init__(self, pool: BlockPool, block_size: int, max_num_seqs: int, max_num_batched_tokens: int,
                 prefix_caching: bool = True):
        self.pool = pool
        self.block_size = block_size
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.prefix_caching = prefix_caching
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0
        self.prefix_queries = 0     # prompt tokens looked up / found in the prefix cache (vLLM's counters)
        self.prefix_hits = 0
        self.on_preempt = lambda seq: None

    # ------------------------------------------------------------------ hashing

    def _hash_blocks(self, seq: Sequence, upto_tokens: int) -> None:
        extend_block_hashes(seq.block_hashes, seq.tokens, seq.mm_items, self.block_size, upto_tokens)

    def register_computed(self, seq: Sequence) -> None:
        """After a step: put the request's newly completed blocks into the prefix cache."""
        if not self.prefix_caching:
            return
        self._hash_blocks(seq, seq.num_computed)
        n_full = seq.num_computed // self.block_size
        for j in range(seq.num_registered, n_full):
            self.pool.register(seq.block_ids[j], seq.block_hashes[j])
        seq.num_registered = max(seq.num_registered, n_full)

    # ------------------------------------------------------------------ blocks

    def blocks_needed(self, n_tokens: int) -> int:
        return -(-n_tokens // self.block_size)

    def _grow(self, seq: Sequence, upto_tokens: int) -> bool:
        need = self.blocks_needed(upto_tokens) - len(seq.block_ids)
        if need <= 0:
            return True
        if need > self.pool.num_free:
            return False
        seq.block_ids += self.pool.allocate(need)
        return True

    def free(self, seq: Sequence) -> None:
        self.pool.release(seq.block_ids)
        seq.block_ids = []
        seq.slot_table = None
        seq.num_registered = 0

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.free(seq)
        seq.num_computed = 0
        self.num_preemptions += 1
        self.on_preempt(seq)
        self.waiting.appendleft(seq)

    def _admit_prefix(self, seq: Sequence) -> bool:
        """Take the longest cached prefix and the blocks for the first chunk; False when blocks are short."""
        hit: list[int] = []
        if self.prefix_caching:
            self._hash_blocks(seq, len(seq.tokens))
            hit = self.pool.lookup(seq.block_hashes[:(len(seq.tokens) - 1) // self.block_size])
        revived = sum(1 for i in hit if self.pool.blocks[i].ref_count == 0)
        n_computed = len(hit) * self.block_size
        n_first = min(len(seq.tokens) - n_computed, self.max_num_batched_tokens)
        fresh = self.blocks_needed(n_computed + n_first) - len(hit)
        if revived + fresh > self.pool.num_free:
            return False
        self.pool.touch(hit)
        seq.block_ids = list(hit)
        seq.num_registered = len(hit)
        seq.num_computed = n_computed
        if not seq.admitted:
            seq.admitted = True
            seq.num_cached_prompt = n_computed
            self.prefix_queries += seq.num_prompt
            self.prefix_hits += n_computed
        return True

    # ------------------------------------------------------------------ one step

    def schedule(self) -> list[Chunk]:
        budget = self.max_num_batched_tokens
        chunks: list[Chunk] = []
        preempted = False
        for seq in list(self.running):
            if seq not in self.running or budget == 0:
                continue
            n = min(len(seq.tokens) - seq.num_computed, budget)
            while not self._grow(seq, seq.num_computed + n):
                victim = self.running[-1]
                self._preempt(victim)
                preempted = True
                if victim is seq:
                    break
            if seq not in self.running:
                continue
            chunks.append(Chunk(seq, seq.num_computed, n))
            budget -= n
        chunks = [c for c in chunks if c.seq in self.running]
        budget = self.max_num_batched_tokens - sum(c.count for c in chunks)
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs and not preempted:
            seq = self.waiting[0]
            if not self._admit_prefix(seq):
                break
            n = min(len(seq.tokens) - seq.num_computed, budget)
            if not self._grow(seq, seq.num_computed + n):
                self.free(seq)
                seq.num_computed = 0
                break
            self.waiting.popleft()
            self.running.append(seq)
            if seq.first_scheduled is None:
                seq.first_scheduled = time.monotonic()
            chunks.append(Chunk(seq, seq.num_computed, n))
            budget -= n
        return chunks

    def remove(self, seq: Sequence) -> None:
        """A finished or cancelled request leaves at once and frees its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.free(seq)

    @property
    def has_work(self) -> bool:
        return bool(self.running or self.waiting)
