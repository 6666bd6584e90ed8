"""Block pool bookkeeping: chained content hashes (tokens and image hashes at their offsets), LRU order of freed
blocks, revival of a cached block on a hit, eviction of the least recently used one; kv-cache size parsing."""

from __future__ import annotations

import pytest
import torch

from model.engine.block_pool import BlockPool, block_hash, extend_block_hashes
from model.engine.kv_cache import kv_cache_bytes, parse_size
from model.engine.request import MultiModalItem


def item(h: bytes, first: int, n: int) -> MultiModalItem:
    return MultiModalItem("image", h, torch.zeros(0), torch.zeros(1, 3), torch.arange(first, first + n))


def test_hashes_chain_and_include_images_at_their_offsets():
    tokens = list(range(40))
    a, b, c = [], [], []
    extend_block_hashes(a, tokens, [item(b"x", 20, 4)], 8, 40)
    extend_block_hashes(b, tokens, [item(b"y", 20, 4)], 8, 40)
    extend_block_hashes(c, tokens, [item(b"x", 21, 4)], 8, 40)
    assert len(a) == 5
    assert a[:2] == b[:2] == c[:2]           # blocks before the image agree
    assert a[2] != b[2] and a[2] != c[2]     # another image, or the same image one token later
    assert a[4] != b[4]                      # and every later block, through the chain
    assert block_hash(None, [1, 2]) != block_hash(a[0], [1, 2])
    partial = []
    extend_block_hashes(partial, tokens, [], 8, 15)
    assert len(partial) == 1                 # only full blocks are hashed


def test_lru_eviction_and_revival():
    pool = BlockPool(4)
    first = pool.allocate(2)
    for i, h in zip(first, (b"h0", b"h1")):
        pool.register(i, h)
    second = pool.allocate(2)
    assert pool.num_free == 0 and pool.usage() == 1.0
    pool.release(first)                       # freed: still cached, at the tail, chain tail first
    assert pool.lookup([b"h0", b"h1", b"h2"]) == first
    pool.touch(first[:1])                     # a hit revives the block from the free queue
    assert pool.num_free == 1 and pool.blocks[first[0]].ref_count == 1
    fresh = pool.allocate(1)                  # evicts the only free (cached) block
    assert fresh == first[1:] and pool.lookup([b"h0", b"h1"]) == first[:1]
    pool.release(second + fresh + first[:1])
    assert pool.num_free == 4
    with pytest.raises(RuntimeError):
        pool.allocate(5)


def test_sizes():
    assert parse_size("4GiB", "x") == 4 * 2 ** 30 and parse_size("512MB", "x") == 512 * 10 ** 6
    assert parse_size("1000", "x") == 1000
    assert kv_cache_bytes("2MiB", torch.device("cpu")) == 2 * 2 ** 20
    assert 0 < kv_cache_bytes("0.01", torch.device("cpu")) < kv_cache_bytes(0.02, torch.device("cpu"))
    for bad in ("lots", "-1", "0"):
        with pytest.raises(ValueError, match="--kv-cache-memory"):
            kv_cache_bytes(bad, torch.device("cpu"))
