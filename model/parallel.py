"""Tensor-parallel primitives (vLLM's scheme, runtime spec §8): process group, weight sharding, all-reduce.

Column-parallel linears (q/k/v, gate/up, expert gate/up) keep a slice of the output rows; row-parallel linears
(o_proj, down_proj, expert down) keep a slice of the input columns and all-reduce their outputs, so a decoder layer
needs exactly two all-reduces. FP8 weights are sharded together with their 128x128 scale grid, which requires every
sharded extent to be a multiple of 128 on each rank (vLLM's `validate_fp8_block_shape`); sizes that cannot be split
raise ValueError naming the tensor, the size and the TP degree (e.g. 30B-A3B experts I=768 at TP=4: 192 per rank,
use expert parallelism instead: `expert_range`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from model.quant import BLOCK


@dataclass(frozen=True)
class TensorParallel:
    """This process's place in the TP group; world_size 1 means no communication at all."""

    rank: int = 0
    world_size: int = 1
    group: object | None = None

    def all_reduce(self, x: Tensor) -> Tensor:
        """Sum x over the group, in place (returns x)."""
        if self.world_size > 1:
            dist.all_reduce(x, op=dist.ReduceOp.SUM, group=self.group)
        return x


def init_tensor_parallel(backend: str | None = None, rank: int | None = None, world_size: int | None = None,
                         init_method: str | None = None) -> TensorParallel:
    """Join (or create) the default process group: NCCL when CUDA is available, else gloo.

    rank/world_size default to the torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
    With a world size of 1 no process group is created.
    """
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of size {world_size}")
    if world_size == 1:
        return TensorParallel()
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if not dist.is_initialized():
        if init_method is None and "MASTER_ADDR" not in os.environ:
            raise ValueError("tensor parallelism needs MASTER_ADDR/MASTER_PORT (run under torchrun) or init_method")
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    elif (dist.get_rank(), dist.get_world_size()) != (rank, world_size):
        raise ValueError(f"a process group (rank {dist.get_rank()} of {dist.get_world_size()}) already exists")
    return TensorParallel(rank, world_size, dist.group.WORLD)


# ----------------------------------------------------------------------------------------------------------
# sharding


def split_size(size: int, world_size: int, what: str, block: int | None = None) -> int:
    """Per-rank extent of a dimension of `size` split `world_size` ways; ValueError when it does not split."""
    if size % world_size:
        raise ValueError(f"{what}: {size} is not divisible by the tensor-parallel size {world_size}")
    per_rank = size // world_size
    if block and world_size > 1 and per_rank % block:
        raise ValueError(f"{what}: {size} / TP {world_size} = {per_rank} per rank is not a multiple of the "
                         f"{block}-wide FP8 block; use a smaller TP degree or expert parallelism")
    return per_rank


def shard_rows(w: Tensor, rank: int, world_size: int, what: str, scale_inv: Tensor | None = None,
               block: tuple[int, int] = BLOCK) -> tuple[Tensor, Tensor | None]:
    """Column-parallel: rows [.., N, K] -> [.., N/tp, K] (and the scale grid's row blocks with them)."""
    n = w.shape[-2]
    per = split_size(n, world_size, what, block[0] if scale_inv is not None else None)
    shard = w[..., rank * per:(rank + 1) * per, :].contiguous()
    if scale_inv is None:
        return shard, None
    if world_size == 1:
        return shard, scale_inv
    b = per // block[0]
    return shard, scale_inv[..., rank * b:(rank + 1) * b, :].contiguous()


def shard_cols(w: Tensor, rank: int, world_size: int, what: str, scale_inv: Tensor | None = None,
               block: tuple[int, int] = BLOCK) -> tuple[Tensor, Tensor | None]:
    """Row-parallel: columns [.., N, K] -> [.., N, K/tp] (outputs must then be all-reduced)."""
    k = w.shape[-1]
    per = split_size(k, world_size, what, block[1] if scale_inv is not None else None)
    shard = w[..., rank * per:(rank + 1) * per].contiguous()
    if scale_inv is None:
        return shard, None
    if world_size == 1:
        return shard, scale_inv
    b = per // block[1]
    return shard, scale_inv[..., rank * b:(rank + 1) * b].contiguous()


def shard_merged_rows(parts: list[tuple[Tensor, Tensor | None]], rank: int, world_size: int, what: str,
                      block: tuple[int, int] = BLOCK) -> tuple[Tensor, Tensor | None]:
    """Several column-parallel weights fused into one GEMM (gate|up): each is split on its own, then concatenated."""
    shards = [shard_rows(w, rank, world_size, f"{what}[{i}]", s, block) for i, (w, s) in enumerate(parts)]
    weight = torch.cat([w for w, _ in shards], dim=-2)
    scales = [s for _, s in shards]
    return weight, (torch.cat(scales, dim=-2) if all(s is not None for s in scales) else None)


def kv_head_for_rank(rank: int, world_size: int, num_kv_heads: int) -> tuple[int, int]:
    """(first kv head, kv heads) held by `rank`; with fewer kv heads than ranks each rank holds one replica."""
    if num_kv_heads >= world_size:
        per = split_size(num_kv_heads, world_size, "num_key_value_heads")
        return rank * per, per
    if world_size % num_kv_heads:
        raise ValueError(f"num_key_value_heads {num_kv_heads} does not divide the tensor-parallel size {world_size}")
    return rank // (world_size // num_kv_heads), 1


def shard_qkv(q: tuple[Tensor, Tensor | None], k: tuple[Tensor, Tensor | None], v: tuple[Tensor, Tensor | None],
              num_heads: int, num_kv_heads: int, head_dim: int, rank: int, world_size: int,
              block: tuple[int, int] = BLOCK) -> dict[str, tuple[Tensor, Tensor | None]]:
    """q [nq*hd, H] split by heads; k/v [nkv*hd, H] split by kv heads, replicated when nkv < TP (vLLM QKVParallelLinear)."""
    split_size(num_heads, world_size, "num_attention_heads")
    out = {"q_proj": shard_rows(q[0], rank, world_size, "q_proj", q[1], block)}
    first, count = kv_head_for_rank(rank, world_size, num_kv_heads)
    for name, (w, s) in (("k_proj", k), ("v_proj", v)):
        rows = slice(first * head_dim, (first + count) * head_dim)
        if s is not None and (rows.start % block[0] or (rows.stop - rows.start) % block[0]):
            raise ValueError(f"{name}: kv heads {first}..{first + count - 1} (head_dim {head_dim}) do not align with "
                             f"the {block[0]}-row FP8 blocks")
        scale = None if s is None else s[rows.start // block[0]:rows.stop // block[0]].contiguous()
        out[name] = (w[rows].contiguous(), scale)
    return out


def shard_experts(gate_up: Tensor, down: Tensor, rank: int, world_size: int,
                  gate_up_scale_inv: Tensor | None = None, down_scale_inv: Tensor | None = None,
                  block: tuple[int, int] = BLOCK) -> dict[str, Tensor]:
    """TP mode for MoE: every expert keeps I/tp of its intermediate size.

    gate_up [E, 2I, H] (gate rows then up rows; FP8 scale grid likewise gate blocks then up blocks, as in
    model.quant.Fp8Experts), down [E, H, I] -> {"gate_up_proj": [E, 2I/tp, H], "down_proj": [E, H, I/tp], scales}.
    """
    i = down.shape[-1]
    gate, up = gate_up[:, :i], gate_up[:, i:]
    gs = us = None
    if gate_up_scale_inv is not None:
        gs, us = gate_up_scale_inv.chunk(2, dim=1)
    w13, s13 = shard_merged_rows([(gate, gs), (up, us)], rank, world_size, "experts.gate_up_proj", block)
    w2, s2 = shard_cols(down, rank, world_size, "experts.down_proj", down_scale_inv, block)
    out = {"gate_up_proj": w13, "down_proj": w2}
    if s13 is not None:
        out["gate_up_proj_scale_inv"] = s13
    if s2 is not None:
        out["down_proj_scale_inv"] = s2
    return out


def expert_range(num_experts: int, rank: int, world_size: int) -> range:
    """Expert parallelism: the whole experts held by `rank` (routing stays replicated, outputs all-reduced)."""
    per = split_size(num_experts, world_size, "num_experts")
    return range(rank * per, (rank + 1) * per)
