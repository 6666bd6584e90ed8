"""Qwen3-VL-MoE sparse MoE block (no shared expert) and reading expert weights in any on-disk layout.

Routing as transformers' `Qwen3VLMoeTextTopKRouter`: router logits in the activation dtype, softmax in float32,
top-k, renormalised over the k picks (`norm_topk_prob`; true for every released checkpoint, and transformers
always renormalises), weights cast back to the activation dtype. Each expert is a SwiGLU with fused gate|up rows.

Compute is grouped by expert: the N*k (token, expert) pairs are sorted by expert, the tokens gathered once, one
GEMM pair per expert that received tokens, then the weighted results are scattered back and the k contributions of
each token summed in float32 (transformers sums in the activation dtype; float32 is the more accurate choice and
what fused-MoE kernels do).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.quant import BLOCK, FP8_DTYPE, scale_grid_shape


class Experts(nn.Module):
    """All experts of a layer, stacked: gate_up_proj [E, 2I, H] (gate rows then up rows), down_proj [E, H, I]."""

    def __init__(self, num_experts: int, hidden_size: int, moe_intermediate_size: int,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        super().__init__()
        e, h, i = num_experts, hidden_size, moe_intermediate_size
        self.num_experts, self.hidden_size, self.intermediate_size = e, h, i
        self.gate_up_proj = nn.Parameter(torch.empty(e, 2 * i, h, dtype=dtype, device=device))
        self.down_proj = nn.Parameter(torch.empty(e, h, i, dtype=dtype, device=device))

    def forward(self, x_sorted: Tensor, tokens_per_expert: list[int]) -> Tensor:
        return grouped_by_expert(x_sorted, tokens_per_expert, self.expert)

    def expert(self, x: Tensor, e: int) -> Tensor:                          # [n, H] -> [n, H]
        gate, up = F.linear(x, self.gate_up_proj[e]).chunk(2, dim=-1)       # [n, I] each
        return F.linear(F.silu(gate) * up, self.down_proj[e])


def grouped_by_expert(x_sorted: Tensor, tokens_per_expert: list[int], expert: Callable[[Tensor, int], Tensor]) -> Tensor:
    """x_sorted [M, H], rows grouped by expert in expert order, tokens_per_expert[e] rows for expert e -> [M, H]:
    one `expert(rows, e)` call (a GEMM pair) per expert that received tokens."""
    out = x_sorted.new_empty(x_sorted.shape)
    start = 0
    for e, n in enumerate(tokens_per_expert):
        if n:
            out[start:start + n] = expert(x_sorted[start:start + n], e)
            start += n
    return out


class SparseMoeBlock(nn.Module):
    """x [N, H] -> [N, H]. Params: gate.weight [E, H] (router), experts.gate_up_proj [E, 2I, H], experts.down_proj [E, H, I].

    `experts` may be swapped for `model.quant.Fp8Experts` (same call contract) to run FP8 checkpoints.
    """

    def __init__(self, hidden_size: int, moe_intermediate_size: int, num_experts: int, top_k: int,
                 norm_topk_prob: bool, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                 experts: range | None = None):
        super().__init__()
        if not 0 < top_k <= num_experts:
            raise ValueError(f"top_k must be in 1..num_experts={num_experts}, got {top_k}")
        self.num_experts, self.top_k, self.norm_topk_prob = num_experts, top_k, norm_topk_prob
        # expert parallelism: this block holds experts `local` only; pairs routed elsewhere contribute zero here
        # and the caller all-reduces the partial outputs over the ranks
        self.local = range(num_experts) if experts is None else experts
        self.gate = nn.Linear(hidden_size, num_experts, bias=False, dtype=dtype, device=device)
        self.experts = Experts(len(self.local), hidden_size, moe_intermediate_size, dtype=dtype, device=device)

    def route(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [N, H] -> (weights [N, k] in the router's dtype, expert ids [N, k] int64)."""
        logits = self.gate(x)                                               # [N, E]
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
        weights, ids = torch.topk(probs, self.top_k, dim=-1)
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights.to(logits.dtype), ids

    def forward(self, x: Tensor) -> Tensor:
        n, h = x.shape
        weights, ids = self.route(x)                                        # [N, k], [N, k]
        flat_ids = ids.reshape(-1)                                          # [N*k], pair p = token p // k
        order = torch.argsort(flat_ids, stable=True)                        # pairs grouped by expert
        counts = torch.bincount(flat_ids, minlength=self.num_experts)
        lo, hi = self.local.start, self.local.stop
        if (lo, hi) != (0, self.num_experts):                               # the local experts' pairs only
            first = int(counts[:lo].sum())
            order = order[first:first + int(counts[lo:hi].sum())]
        x_sorted = x.index_select(0, order // self.top_k)                   # [M, H]
        y_sorted = self.experts(x_sorted, counts[lo:hi].tolist())           # [M, H]
        y_sorted = y_sorted * weights.reshape(-1)[order].unsqueeze(-1).to(y_sorted.dtype)
        y_pairs = y_sorted.new_zeros(n * self.top_k, h) if len(order) < n * self.top_k else torch.empty_like(y_sorted)
        y_pairs[order] = y_sorted                                           # back to (token, slot) order
        return y_pairs.view(n, self.top_k, h).sum(dim=1, dtype=torch.float32).to(x.dtype)


# ----------------------------------------------------------------------------------------------------------
# expert weights on disk
#
# fused (Hub):           {prefix}gate_up_proj [E, H, 2I], {prefix}down_proj [E, I, H]   (x @ W)
# fused (transformers):  {prefix}gate_up_proj [E, 2I, H], {prefix}down_proj [E, H, I]   (save_pretrained, F.linear)
# per-expert:            {prefix}{e}.gate_proj.weight [I, H], .up_proj.weight [I, H], .down_proj.weight [H, I]
# FP8 adds weight_scale_inv next to each per-expert weight, or {prefix}gate_up_proj_scale_inv / down_proj_scale_inv.


def _detect_layout(names: set[str], prefix: str, num_experts: int) -> tuple[str, bool]:
    """-> ("fused" | "per_expert", is_fp8). Raises ValueError when the names do not say it unambiguously."""
    fused = [f"{prefix}gate_up_proj", f"{prefix}down_proj"]
    has_fused = [k in names for k in fused]
    per_expert = any(k.startswith(prefix) and k[len(prefix):].split(".", 1)[0].isdigit() for k in names)
    if any(has_fused) and per_expert:
        raise ValueError(f"ambiguous expert layout under '{prefix}': both fused tensors ({', '.join(fused)}) "
                         f"and per-expert tensors ({prefix}<e>.*) are present")
    if any(has_fused):
        if not all(has_fused):
            raise ValueError(f"incomplete fused experts under '{prefix}': found "
                             f"{[k for k, h in zip(fused, has_fused) if h]}, missing {[k for k, h in zip(fused, has_fused) if not h]}")
        return "fused", f"{prefix}gate_up_proj_scale_inv" in names
    if per_expert:
        return "per_expert", f"{prefix}0.gate_proj.weight_scale_inv" in names
    found = sorted(k for k in names if k.startswith(prefix))
    raise ValueError(f"no expert weights under '{prefix}' (expected {prefix}gate_up_proj/down_proj or "
                     f"{prefix}<e>.gate_proj.weight ...); found {found[:8] or 'nothing'}")


def _orient(t: Tensor, name: str, rows: int, cols: int, num_experts: int) -> Tensor:
    """Fused [E, rows, cols] (transformers) or [E, cols, rows] (Hub) -> [E, rows, cols]."""
    want, hub = (num_experts, rows, cols), (num_experts, cols, rows)
    shape = tuple(t.shape)
    if rows == cols and shape == want:
        raise ValueError(f"{name}: shape {shape} is square in its last two dims, so the Hub layout [E, {cols}, {rows}] "
                         f"and the transformers layout [E, {rows}, {cols}] cannot be told apart")
    if shape == want:
        return t
    if shape == hub:
        return t.transpose(1, 2).contiguous()
    raise ValueError(f"{name}: shape {shape} matches neither the transformers layout {want} nor the Hub layout {hub}")


def _per_expert(get: Callable[[str], Tensor], names: set[str], prefix: str, num_experts: int,
                suffix: str, shapes: dict[str, tuple[int, int]], experts: range | None = None) -> dict[str, list[Tensor]]:
    # reads {prefix}{e}.{proj}.{suffix} for the experts asked for (all by default), checking names and shapes
    wanted = [f"{prefix}{e}.{proj}.{suffix}" for e in range(num_experts) for proj in shapes]
    missing = [k for k in wanted if k not in names]
    if missing:
        raise ValueError(f"per-expert weights under '{prefix}' are incomplete: {len(missing)} missing, "
                         f"e.g. {missing[:3]} (num_experts={num_experts})")
    expert_ids = {k[len(prefix):].split(".", 1)[0] for k in names if k.startswith(prefix)}
    extra = sorted(x for x in expert_ids if x.isdigit() and int(x) >= num_experts)
    if extra:
        raise ValueError(f"found weights for more experts than num_experts={num_experts} under '{prefix}': "
                         f"expert ids {extra[:3]}")
    out: dict[str, list[Tensor]] = {proj: [] for proj in shapes}
    for e in (range(num_experts) if experts is None else experts):
        for proj, shape in shapes.items():
            name = f"{prefix}{e}.{proj}.{suffix}"
            t = get(name)
            if tuple(t.shape) != shape:
                raise ValueError(f"{name}: shape {tuple(t.shape)}, expected {shape}")
            out[proj].append(t)
    return out


def _fused(get: Callable[..., Tensor], name: str, num_experts: int, experts: range | None) -> Tensor:
    # a fused [E, ...] tensor, or only rows experts.start:experts.stop of it (the reader slices on disk)
    if experts is None or (experts.start, experts.stop) == (0, num_experts):
        return get(name)
    return get(name, slice(experts.start, experts.stop))


def load_expert_weights(get: Callable[..., Tensor], names: set[str], prefix: str, num_experts: int,
                        hidden_size: int, moe_intermediate_size: int, experts: range | None = None) -> dict[str, Tensor]:
    """One layer's experts in any unquantized on-disk layout -> {"gate_up_proj": [E, 2I, H], "down_proj": [E, H, I]}.

    `experts` (expert parallelism) reads only that range of experts; E is then len(experts). `get(name)` returns a
    tensor, `get(name, rows)` the dim-0 slice `rows` of it (needed only for a subset of fused experts)."""
    h, i = hidden_size, moe_intermediate_size
    e = num_experts if experts is None else len(experts)
    layout, fp8 = _detect_layout(names, prefix, num_experts)
    if fp8:
        raise ValueError(f"experts under '{prefix}' are FP8-quantized (weight_scale_inv present); "
                         f"read them with load_fp8_expert_weights")
    if layout == "fused":
        return {"gate_up_proj": _orient(_fused(get, f"{prefix}gate_up_proj", num_experts, experts),
                                        f"{prefix}gate_up_proj", 2 * i, h, e),
                "down_proj": _orient(_fused(get, f"{prefix}down_proj", num_experts, experts),
                                     f"{prefix}down_proj", h, i, e)}
    w = _per_expert(get, names, prefix, num_experts, "weight",
                    {"gate_proj": (i, h), "up_proj": (i, h), "down_proj": (h, i)}, experts)
    return {"gate_up_proj": torch.stack([torch.cat([g, u], 0) for g, u in zip(w["gate_proj"], w["up_proj"])]),
            "down_proj": torch.stack(w["down_proj"])}


def load_fp8_expert_weights(get: Callable[..., Tensor], names: set[str], prefix: str, num_experts: int,
                            hidden_size: int, moe_intermediate_size: int,
                            block: tuple[int, int] = BLOCK, experts: range | None = None) -> dict[str, Tensor]:
    """One layer's FP8 experts -> the parameters of `model.quant.Fp8Experts` (scales upcast to float32):
    gate_up_proj e4m3 [E, 2I, H], gate_up_proj_scale_inv [E, 2*ceil(I/128), ceil(H/128)], down_proj e4m3 [E, H, I],
    down_proj_scale_inv [E, ceil(H/128), ceil(I/128)]. `experts` and `get` as in load_expert_weights."""
    h, i = hidden_size, moe_intermediate_size
    e = num_experts if experts is None else len(experts)
    layout, fp8 = _detect_layout(names, prefix, num_experts)
    if not fp8:
        raise ValueError(f"experts under '{prefix}' are not FP8-quantized (no weight_scale_inv); use load_expert_weights")
    gi, gh = scale_grid_shape(i, h, block)
    if layout == "per_expert":
        w = _per_expert(get, names, prefix, num_experts, "weight",
                        {"gate_proj": (i, h), "up_proj": (i, h), "down_proj": (h, i)}, experts)
        s = _per_expert(get, names, prefix, num_experts, "weight_scale_inv",
                        {"gate_proj": (gi, gh), "up_proj": (gi, gh), "down_proj": scale_grid_shape(h, i, block)},
                        experts)
        out = {"gate_up_proj": torch.stack([torch.cat([g, u], 0) for g, u in zip(w["gate_proj"], w["up_proj"])]),
               "gate_up_proj_scale_inv": torch.stack([torch.cat([g, u], 0) for g, u in zip(s["gate_proj"], s["up_proj"])]),
               "down_proj": torch.stack(w["down_proj"]), "down_proj_scale_inv": torch.stack(s["down_proj"])}
    else:
        if i % block[0]:
            raise ValueError(f"fused FP8 experts under '{prefix}' with moe_intermediate_size={i} (not a multiple of "
                             f"{block[0]}) share a scale block between gate and up rows; not supported")
        if block[0] != block[1]:
            raise ValueError(f"fused FP8 experts need square scale blocks, got {block}")
        out = {}
        for name, rows, cols in (("gate_up_proj", 2 * i, h), ("down_proj", h, i)):
            w = _fused(get, f"{prefix}{name}", num_experts, experts)
            s = _fused(get, f"{prefix}{name}_scale_inv", num_experts, experts)
            if tuple(w.shape) == (e, cols, rows) and rows != cols:  # Hub orientation: blocks transpose with the weight
                w, s = w.transpose(1, 2), s.transpose(1, 2)
            w = _orient(w, f"{prefix}{name}", rows, cols, e)
            grid = (e, math.ceil(rows / block[0]), math.ceil(cols / block[1]))
            if tuple(s.shape) != grid:
                raise ValueError(f"{prefix}{name}_scale_inv: shape {tuple(s.shape)}, expected {grid}")
            out[name], out[f"{name}_scale_inv"] = w.contiguous(), s.contiguous()
    for name in ("gate_up_proj", "down_proj"):
        if out[name].dtype != FP8_DTYPE:
            raise ValueError(f"{prefix}{name}: expected float8_e4m3fn weights next to scales, got {out[name].dtype}")
        out[f"{name}_scale_inv"] = out[f"{name}_scale_inv"].to(torch.float32)
    return out
