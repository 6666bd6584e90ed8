"""The paged KV cache's tensors and the attention of one engine step over them.

Layout (nano-vllm): per layer one K and one V pool of `num_blocks * block_size` slots, [layers, slots, nkv, hd];
token i of a request lives in slot `block_table[i // bs] * bs + i % bs`. One step packs the scheduled tokens of
every request into one row ([1, N] tokens through the decoder); `PagedStep.attend` writes their keys/values with one
index_copy_ per layer, then attends per prefill chunk (causal inside the chunk, all of the request's earlier
context visible) and for all single-token decodes together (keys gathered into a padded batch with a key mask).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from model.text import attention


class PagedKVCache:
    def __init__(self, n_layers: int, num_blocks: int, block_size: int, n_kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device):
        shape = (n_layers, num_blocks * block_size, n_kv_heads, head_dim)
        # empty, not zeros: a slot is written before it is read (padding reads a written slot and is masked),
        # and untouched pages of a large budget are never committed
        self.k = torch.empty(shape, dtype=dtype, device=device)
        self.v = torch.empty(shape, dtype=dtype, device=device)
        self.block_size = block_size

    @staticmethod
    def bytes_per_block(n_layers: int, block_size: int, n_kv_heads: int, head_dim: int, dtype: torch.dtype) -> int:
        return 2 * n_layers * block_size * n_kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


@dataclass
class StepLayout:
    """Where the N packed tokens of one step go and what each attends to (plain tensors: sent to TP workers).

    slots [N]: the KV slot of every new token. prefill: (first, count, context slots [ctx]) per multi-token
    chunk, its tokens being packed rows first..first+count-1 and the last `count` of its ctx positions.
    decode_rows [B] packed rows of single-token requests, decode_slots [B, C] their context slots (padded with
    the row's first slot), decode_valid [B, C] bool (None when every context has length C)."""

    slots: Tensor
    prefill: list[tuple[int, int, Tensor]]
    decode_rows: Tensor | None = None
    decode_slots: Tensor | None = None
    decode_valid: Tensor | None = None


class PagedStep:
    """The `AttentionCache` (model/text.py) of one engine step."""

    def __init__(self, cache: PagedKVCache, layout: StepLayout):
        self.cache = cache
        self.layout = layout
        self.length = 0     # advanced by TextDecoder; the layout, not a length, says where tokens go
        device = cache.k.device
        self.masks = []
        for first, count, ctx in layout.prefill:
            n_ctx = ctx.shape[0]
            if n_ctx == count:
                self.masks.append(None)      # a whole prompt in one chunk: plain causal
            else:
                q_pos = torch.arange(n_ctx - count, n_ctx, device=device)[:, None]
                self.masks.append((torch.arange(n_ctx, device=device)[None, :] <= q_pos)[None, None])  # [1,1,n,ctx]
        self.decode_mask = None
        if layout.decode_valid is not None:
            self.decode_mask = layout.decode_valid[:, None, None, :]        # [B, 1, 1, C]

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        """q [1, nq, N, hd], k/v [1, nkv, N, hd] of the packed step -> [1, nq, N, hd]."""
        lay = self.layout
        k_pool, v_pool = self.cache.k[layer], self.cache.v[layer]          # [slots, nkv, hd]
        k_pool.index_copy_(0, lay.slots, k[0].transpose(0, 1))
        v_pool.index_copy_(0, lay.slots, v[0].transpose(0, 1))
        out = torch.empty_like(q)
        for (first, count, ctx), m in zip(lay.prefill, self.masks):
            keys = k_pool.index_select(0, ctx).transpose(0, 1)[None]          # [1, nkv, ctx, hd]
            values = v_pool.index_select(0, ctx).transpose(0, 1)[None]
            out[:, :, first:first + count] = attention(q[:, :, first:first + count], keys, values, m)
        if lay.decode_rows is not None:
            rows = lay.decode_rows
            qd = q[0].index_select(1, rows).transpose(0, 1)[:, :, None]          # [B, nq, 1, hd]
            keys = k_pool[lay.decode_slots].transpose(1, 2)                     # [B, nkv, C, hd]
            values = v_pool[lay.decode_slots].transpose(1, 2)
            od = attention(qd, keys, values, self.decode_mask)                  # [B, nq, 1, hd]
            out[0].index_copy_(1, rows, od[:, :, 0].transpose(0, 1))
        return out


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2 ** 10, "m": 1e6, "mb": 1e6, "mib": 2 ** 20,
          "g": 1e9, "gb": 1e9, "gib": 2 ** 30, "t": 1e12, "tb": 1e12, "tib": 2 ** 40, "ki": 2 ** 10,
          "mi": 2 ** 20, "gi": 2 ** 30, "ti": 2 ** 40}


def available_memory(device: torch.device) -> int:
    """Bytes that could still be allocated: free device memory on CUDA, MemAvailable on the host otherwise."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def parse_size(spec: str | int, what: str) -> int:
    """A byte size: 4GiB, 512MB, 100MiB, 1000000 -> bytes."""
    m = _SIZE.match(str(spec))
    if m is None:
        raise ValueError(f"{what}: {spec!r} is not a size (e.g. 4GiB, 512MB)")
    value = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    if value < 1:
        raise ValueError(f"{what} must be positive, got {spec!r}")
    return int(value)


def kv_cache_bytes(spec: str | float, device: torch.device) -> int:
    """`--kv-cache-memory`: a size ("2GiB", "512MB") or a fraction in (0, 1] of the available memory."""
    try:
        fraction = float(spec)
    except (TypeError, ValueError):
        return parse_size(spec, "--kv-cache-memory")
    if 0 < fraction <= 1:
        return int(fraction * available_memory(device))
    if fraction > 1 and fraction == int(fraction):
        return int(fraction)
    raise ValueError(f"--kv-cache-memory: {spec!r} is neither a size (e.g. 4GiB, 512MB) nor a fraction of the free "
                     "memory in (0, 1] (e.g. 0.5)")
