"""Paged KV-cache bookkeeping: a pool of fixed-size blocks, ref counts, content hashes for prefix caching.

Design (vLLM v1 `block_pool.py` / `kv_cache_utils.py`, nano-vllm `block_manager.py`): every block is created once.
A full block gets a content hash chained over the previous block's hash, its token ids and the (image hash,
offset in block) of every image token in it, so equal hash chains mean equal keys/values (positions included:
the 3-D positions of a prefix depend only on its tokens and the grids of its images, which the image hash fixes).
Freed blocks keep their hash and go to the tail of the free queue; allocation pops the head (least recently
used first), which evicts a cached block; a prefix hit revives a free block from the middle of the queue.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    hash: bytes | None = None     # set once the block is full and registered


# one mm-key per image/video item overlapping a block: (item hash, offset of the item's first token - block start)
MMKey = tuple[bytes, int]


def block_hash(parent: bytes | None, tokens: list[int] | np.ndarray, mm_keys: tuple[MMKey, ...] = ()) -> bytes:
    """Chained content hash of one full block (blake2b-128 over parent + int64 tokens + mm keys)."""
    h = hashlib.blake2b(parent or b"root", digest_size=16)
    h.update(np.asarray(tokens, dtype=np.int64).tobytes())
    for item_hash, offset in mm_keys:
        h.update(item_hash)
        h.update(struct.pack("<q", offset))
    return h.digest()


def extend_block_hashes(hashes: list[bytes], tokens: list[int], mm_items, block_size: int, upto: int) -> None:
    """Append to `hashes` the chained hashes of the full blocks among tokens[:upto] not hashed yet. `mm_items`
    (model.engine.request.MultiModalItem) give each block the (hash, first-token offset - block start) of every
    image/video with a token in it."""
    bs = block_size
    for j in range(len(hashes), upto // bs):
        lo, hi = j * bs, (j + 1) * bs
        keys = tuple((it.hash, int(it.offsets[0]) - lo) for it in mm_items
                     if int(it.offsets[0]) < hi and int(it.offsets[-1]) >= lo)
        hashes.append(block_hash(hashes[-1] if hashes else None, tokens[lo:hi], keys))


class BlockPool:
    """`num_blocks` blocks; free ones in LRU order (OrderedDict: O(1) pop-head, append-tail, remove-middle)."""

    def __init__(self, num_blocks: int):
        if num_blocks < 1:
            raise ValueError(f"the KV cache needs at least one block, got {num_blocks}")
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.cached: dict[bytes, int] = {}      # block hash -> block id (full, registered blocks)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free(self) -> int:
        return len(self.free)

    def usage(self) -> float:
        """Fraction of blocks held by live requests (0..1)."""
        return 1.0 - len(self.free) / len(self.blocks)

    def lookup(self, hashes: list[bytes]) -> list[int]:
        """The longest run of cached blocks matching `hashes` from the start (does not take them)."""
        hit = []
        for h in hashes:
            block_id = self.cached.get(h)
            if block_id is None:
                break
            hit.append(block_id)
        return hit

    def touch(self, block_ids: list[int]) -> None:
        """Take a reference on cached blocks (reviving free ones)."""
        for i in block_ids:
            block = self.blocks[i]
            if block.ref_count == 0:
                del self.free[i]
            block.ref_count += 1

    def allocate(self, n: int) -> list[int]:
        """n fresh blocks from the LRU head (evicting their cached content); caller checks num_free first."""
        if n > len(self.free):
            raise RuntimeError(f"asked for {n} KV blocks with {len(self.free)} free")
        out = []
        for _ in range(n):
            i, _ = self.free.popitem(last=False)
            block = self.blocks[i]
            if block.hash is not None:
                if self.cached.get(block.hash) == i:
                    del self.cached[block.hash]
                block.hash = None
            block.ref_count = 1
            out.append(i)
        return out

    def register(self, block_id: int, h: bytes) -> None:
        """Mark a full block with its content hash (the first block with a hash keeps the map entry)."""
        block = self.blocks[block_id]
        if block.hash is not None:
            return
        block.hash = h
        self.cached.setdefault(h, block_id)

    def release(self, block_ids: list[int]) -> None:
        """Drop one reference per block; blocks reaching 0 go to the free tail, the request's last block first
        (so a chain's tail is evicted before its head)."""
        for i in reversed(block_ids):
            block = self.blocks[i]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free[i] = None

    def reset_prefix_cache(self) -> None:
        for i in self.free:
            block = self.blocks[i]
            if block.hash is not None and self.cached.get(block.hash) == i:
                del self.cached[block.hash]
            block.hash = None
