"""Qwen3-VL text decoder: Qwen3 layers (q/k RMSNorm, GQA, interleaved MRoPE), dense or MoE MLPs, DeepStack
injection, and a preallocated KV cache (or any `AttentionCache`: the serving engine's paged one).

Module and parameter names follow the checkpoint (`model.language_model.*`). Every projection is an
`nn.Linear` so quantized linears can replace it; head counts are read from projection outputs
(`q.shape[-1] // head_dim`), so a sharded q/k/v simply yields fewer local heads.

Tensor parallelism (model/parallel.py, runtime spec §8): built with a `TensorParallel` of world size N, every
module holds its rank's shard: q/k/v and gate/up keep a slice of their output rows (kv heads replicated when
there are fewer kv heads than ranks), o_proj and down_proj a slice of their input columns, MoE layers a range
of whole experts. Each layer then all-reduces twice: after attention and after the MLP/MoE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import TextConfig
from model.parallel import TensorParallel, expert_range, kv_head_for_rank, split_size
from model.rope import apply_rotary


class RMSNorm(nn.Module):
    """Statistics in fp32; the weight multiplies after the cast back (as the reference does)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        return self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


class AttentionCache(Protocol):
    """What `Attention` needs from a KV cache: `attend` stores this layer's new keys/values and attends over
    everything cached for the row so far; `TextDecoder` advances `length` by the new tokens after all layers.
    `KVCache` below is generate()'s contiguous cache; the serving engine passes a paged one (model/engine/)."""

    length: int

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor: ...


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """SDPA with GQA: q [B, nq, L, hd], k/v [B, nkv, S, hd], mask [B, 1, L, S] bool (None = causal) -> [B, nq, L, hd]."""
    B, nq, L, hd = q.shape
    nkv = k.shape[1]
    if L == 1 and nq != nkv:
        # one new token: the nq/nkv query heads sharing a kv head are that many query rows over the same keys
        # (no causal structure among them). SDPA's enable_gqa path is several times slower on CPU in bf16.
        out = F.scaled_dot_product_attention(q.reshape(B, nkv, nq // nkv, hd), k, v, attn_mask=mask)
        return out.reshape(B, nq, 1, hd)
    gqa = nq != nkv
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=L > 1, enable_gqa=gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


@dataclass
class KVCache:
    """Keys/values of every layer for B rows and up to `capacity` positions: [layers, B, nkv, capacity, hd]."""

    k: Tensor
    v: Tensor
    length: int = 0

    @classmethod
    def allocate(cls, n_layers: int, batch: int, n_kv_heads: int, capacity: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device) -> "KVCache":
        shape = (n_layers, batch, n_kv_heads, capacity, head_dim)
        return cls(torch.empty(shape, dtype=dtype, device=device), torch.empty(shape, dtype=dtype, device=device))

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        start, end = self.length, self.length + k.shape[2]
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return attention(q, self.k[layer, :, :, :end], self.v[layer, :, :, :end], mask)   # keys [B, nkv, S, hd]


class Attention(nn.Module):
    """Local heads: num_attention_heads / tp query heads, max(1, num_key_value_heads / tp) kv heads."""

    def __init__(self, cfg: TextConfig, tp: TensorParallel = TensorParallel()):
        super().__init__()
        hd = cfg.head_dim
        self.head_dim = hd
        n_heads = split_size(cfg.num_attention_heads, tp.world_size, "num_attention_heads")
        _, self.num_kv_heads = kv_head_for_rank(tp.rank, tp.world_size, cfg.num_key_value_heads)
        self.q_proj = nn.Linear(cfg.hidden_size, n_heads * hd, bias=cfg.attention_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * hd, bias=cfg.attention_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.num_kv_heads * hd, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(n_heads * hd, cfg.hidden_size, bias=cfg.attention_bias)
        self.q_norm = RMSNorm(hd, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(hd, cfg.rms_norm_eps)

    def qkv(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, L, H]; cos/sin [B, L, hd] -> q [B, nq, L, hd], k, v [B, nkv, L, hd] (normed, rotated)."""
        B, L, _ = x.shape
        hd = self.head_dim
        q = self.q_norm(self.q_proj(x).view(B, L, -1, hd)).transpose(1, 2)      # [B, nq, L, hd]
        k = self.k_norm(self.k_proj(x).view(B, L, -1, hd)).transpose(1, 2)      # [B, nkv, L, hd]
        v = self.v_proj(x).view(B, L, -1, hd).transpose(1, 2)                   # [B, nkv, L, hd]
        q = apply_rotary(q, cos[:, None], sin[:, None])
        k = apply_rotary(k, cos[:, None], sin[:, None])
        return q, k, v

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: AttentionCache | None, layer: int,
                mask: Tensor | None) -> Tensor:
        """x [B, L, H]; cos/sin [B, L, hd]; mask [B, 1, L, S] bool (None = plain causal) -> [B, L, H]."""
        B, L, _ = x.shape
        q, k, v = self.qkv(x, cos, sin)
        out = attention(q, k, v, mask) if cache is None else cache.attend(layer, q, k, v, mask)
        return self.o_proj(out.transpose(1, 2).reshape(B, L, -1))


class MLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TextConfig, index: int, tp: TensorParallel = TensorParallel()):
        super().__init__()
        self.tp = tp
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, tp)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.is_moe = cfg.is_moe_layer(index)
        if self.is_moe:
            from model.moe import SparseMoeBlock

            # Experts are split expert-parallel (whole experts per rank), not by slicing every expert's
            # intermediate size: with FP8 each rank's slice must be a multiple of 128, and 30B-A3B's I=768 at
            # TP=4 gives 192 (spec §8.1), which is exactly the product's seed deployment. Routing stays replicated.
            self.mlp = SparseMoeBlock(cfg.hidden_size, cfg.moe_intermediate_size, cfg.num_experts,
                                      cfg.num_experts_per_tok, cfg.norm_topk_prob,
                                      experts=expert_range(cfg.num_experts, tp.rank, tp.world_size))
        else:
            self.mlp = MLP(cfg.hidden_size, split_size(cfg.intermediate_size, tp.world_size, "intermediate_size"))

    def forward(self, h: Tensor, cos: Tensor, sin: Tensor, cache: AttentionCache | None, layer: int,
                mask: Tensor | None) -> Tensor:
        h = h + self.tp.all_reduce(self.self_attn(self.input_layernorm(h), cos, sin, cache, layer, mask))
        x = self.post_attention_layernorm(h)
        if self.is_moe:  # the MoE block is token-major: [N, H] -> [N, H]
            return h + self.tp.all_reduce(self.mlp(x.reshape(-1, x.shape[-1]))).view(x.shape)
        return h + self.tp.all_reduce(self.mlp(x))


class TextDecoder(nn.Module):
    def __init__(self, cfg: TextConfig, tp: TensorParallel = TensorParallel()):
        super().__init__()
        if cfg.hidden_act != "silu":
            raise ValueError(f"config.json: unsupported text hidden_act {cfg.hidden_act!r} (Qwen3 uses silu)")
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i, tp) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, h: Tensor, cos: Tensor, sin: Tensor, cache: AttentionCache | None = None,
                mask: Tensor | None = None, visual_index: Tensor | None = None,
                deepstack: list[Tensor] | None = None) -> Tensor:
        """h [B, L, H] input embeddings -> final-normed hidden states [B, L, H].

        DeepStack level i ([n_visual, H]) is added after layer i at the flat positions `visual_index` of B*L.
        The cache (if any) is written at positions cache.length ... cache.length + L and then advanced.
        """
        B, L, H = h.shape
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, cache, i, mask)
            if deepstack is not None and i < len(deepstack):
                h.view(B * L, H).index_add_(0, visual_index, deepstack[i].to(h.dtype))  # h is this layer's fresh output
        if cache is not None:
            cache.length += L
        return self.norm(h)


def attention_mask_for(key_valid: Tensor, query_len: int) -> Tensor | None:
    """Boolean SDPA mask [B, 1, Lq, S] for the last `query_len` of S positions: causal, padded keys hidden.

    key_valid [B, S] marks real (non-padding) positions. Returns None when SDPA's own causal flag is exact
    (no padding, and the queries are either the whole sequence or a single new token). A padded query still sees itself so its softmax row is never empty (a NaN there would leak
    into real rows through 0 * NaN in the value product)."""
    S = key_valid.shape[1]
    if (query_len == 1 or query_len == S) and bool(key_valid.all()):
        return None
    q_pos = torch.arange(S - query_len, S, device=key_valid.device)[:, None]   # [Lq, 1]
    k_pos = torch.arange(S, device=key_valid.device)[None, :]                   # [1, S]
    causal = k_pos <= q_pos                                                     # [Lq, S]
    mask = causal[None] & key_valid[:, None, :].bool()                          # [B, Lq, S]
    mask = mask | (k_pos == q_pos)[None]
    return mask[:, None]
