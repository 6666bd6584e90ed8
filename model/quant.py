"""Fine-grained FP8 (e4m3, 128x128 weight blocks) as in the official Qwen3-VL `-FP8` checkpoints.

A quantized weight W [N, K] is stored as `weight` float8_e4m3fn [N, K] plus `weight_scale_inv` float32
[ceil(N/128), ceil(K/128)]; W ~= weight * weight_scale_inv (block-wise). Shapes that are not multiples of
128 are supported: the last row/column block is partial and has its own scale.

Two ways to run a quantized linear:
* anywhere: dequantize 128-row blocks of the weight inside the matmul (`_dequant_linear`), so no full
  high-precision copy of the weight ever exists;
* Hopper GPUs (sm_90, CUDA >= 12.9): quantize activations per token and per 128-wide K group (dynamic
  scheme, as vLLM's W8A8 block path) and run one blockwise-scaled FP8 GEMM (`torch.nn.functional.scaled_mm`).
  Any failure of that path falls back to dequantization once, with a warning. benchmarks/gpu_fp8_check.py
  checks it against the dequantized reference on a real GPU.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8_DTYPE).max  # 448.0
BLOCK = (128, 128)
# Dequantize at most this many weight elements at once in the CPU/fallback path (a multiple of 128 rows).
_DEQUANT_CHUNK_ELEMENTS = 1 << 22


def scale_grid_shape(rows: int, cols: int, block: tuple[int, int] = BLOCK) -> tuple[int, int]:
    return math.ceil(rows / block[0]), math.ceil(cols / block[1])


def quantize_fp8_block(w: Tensor, block: tuple[int, int] = BLOCK) -> tuple[Tensor, Tensor]:
    """W [..., N, K] (any float dtype) -> (float8_e4m3fn [..., N, K], scale_inv float32 [..., ceil(N/bn), ceil(K/bk)]).

    Same arithmetic as transformers' `Fp8Quantize._quantize_one` (bit-equal on shapes it accepts): per block
    scale = 448 / amax (1 for an all-zero block), q = clamp(W * scale) -> e4m3, stored scale_inv = 1 / scale.
    Partial blocks are zero-padded, which changes neither amax nor the quantized values.
    """
    if w.ndim < 2:
        raise ValueError(f"FP8 block quantization needs a matrix, got shape {tuple(w.shape)}")
    if not w.dtype.is_floating_point or w.dtype == FP8_DTYPE:
        raise ValueError(f"cannot FP8-quantize a tensor of dtype {w.dtype}")
    bn, bk = block
    *lead, n, k = w.shape
    gn, gk = scale_grid_shape(n, k, block)
    x = w.to(torch.float32)
    if n % bn or k % bk:
        x = F.pad(x, (0, gk * bk - k, 0, gn * bn - n))
    x = x.reshape(*lead, gn, bn, gk, bk)
    amax = x.abs().amax(dim=(-3, -1))                                    # [..., gn, gk]
    nonzero = amax > 0
    scale = torch.where(nonzero, FP8_MAX / torch.where(nonzero, amax, torch.ones_like(amax)), torch.ones_like(amax))
    scale_inv = (1.0 / scale).to(torch.float32)
    q = torch.clamp(x * scale.unsqueeze(-1).unsqueeze(-3), min=-FP8_MAX, max=FP8_MAX).to(FP8_DTYPE)
    q = q.reshape(*lead, gn * bn, gk * bk)[..., :n, :k].contiguous()
    return q, scale_inv


def dequantize_fp8_block(w_fp8: Tensor, scale_inv: Tensor, dtype: torch.dtype = torch.bfloat16,
                         block: tuple[int, int] = BLOCK) -> Tensor:
    """float8 [..., N, K] + scale_inv [..., ceil(N/bn), ceil(K/bk)] -> dtype [..., N, K] (products in float32)."""
    *lead, n, k = w_fp8.shape
    grid = scale_grid_shape(n, k, block)
    if tuple(scale_inv.shape[-2:]) != grid or tuple(scale_inv.shape[:-2]) != tuple(lead):
        raise ValueError(f"scale_inv shape {tuple(scale_inv.shape)} does not match weight {tuple(w_fp8.shape)} "
                         f"with {block[0]}x{block[1]} blocks (expected {(*lead, *grid)})")
    # exact: the e4m3 bits placed in an fp16 are the value / 256 (see _e4m3_over_256), so fold 256 into the scale
    s = scale_inv.to(torch.float32) * 256.0
    w = _e4m3_over_256(w_fp8).to(torch.float32)
    if n % block[0] == 0 and k % block[1] == 0:  # whole blocks: broadcast the grid, no expanded scale tensor
        w = w.view(*lead, grid[0], block[0], grid[1], block[1]) * s.unsqueeze(-1).unsqueeze(-3)
        return w.view(w_fp8.shape).to(dtype)
    s = s.repeat_interleave(block[0], dim=-2)[..., :n, :].repeat_interleave(block[1], dim=-1)[..., :k]
    return (w * s).to(dtype)


def _e4m3_as_fp16_bits(w_fp8: Tensor) -> Tensor:
    # sign to bit 15, exponent|mantissa (7 bits) to bits 13..7: an fp16 with the same mantissa and an exponent
    # 15 - 7 = 8 lower, for normal and subnormal e4m3 alike (e4m3fn's NaN code is never produced by quantization)
    b = w_fp8.view(torch.uint8).to(torch.int16)
    return ((b & 0x7F) << 7) | ((b & 0x80) << 8)


def _e4m3_over_256(w_fp8: Tensor) -> Tensor:
    """float8_e4m3fn -> float16 holding exactly value / 256 (several times faster than .float() on CPU)."""
    if w_fp8.dtype != FP8_DTYPE:
        raise ValueError(f"expected a float8_e4m3fn tensor, got {w_fp8.dtype}")
    return _e4m3_as_fp16_bits(w_fp8).view(torch.float16)


# ----------------------------------------------------------------------------------------------------------
# matmul paths


def _dequant_linear(x: Tensor, weight: Tensor, scale_inv: Tensor, bias: Tensor | None,
                    block: tuple[int, int]) -> Tensor:
    # x [M, K] -> [M, N]; the weight is dequantized a few 128-row blocks at a time, in x's dtype.
    n, k = weight.shape
    rows = max(block[0], (_DEQUANT_CHUNK_ELEMENTS // max(k, 1)) // block[0] * block[0])
    if rows >= n:
        return F.linear(x, dequantize_fp8_block(weight, scale_inv, x.dtype, block), bias)
    out = x.new_empty(x.shape[0], n)
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        w = dequantize_fp8_block(weight[r0:r1], scale_inv[r0 // block[0]:(r1 + block[0] - 1) // block[0]], x.dtype, block)
        out[:, r0:r1] = x @ w.t()
    return out if bias is None else out + bias


def quantize_activation_per_token_group(x: Tensor, group: int = 128) -> tuple[Tensor, Tensor]:
    """Dynamic activation quantization (vLLM `per_token_group_quant_fp8`): x [M, K] -> (e4m3 [M, K], fp32 [M, K/group])."""
    m, k = x.shape
    xg = x.float().view(m, k // group, group)
    scale = xg.abs().amax(-1).clamp(min=1e-10) / FP8_MAX                 # [M, K/group]
    q = (xg / scale.unsqueeze(-1)).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE).view(m, k)
    return q, scale


_SCALED_MM_STATE: dict[str, object] = {"disabled": None}  # reason string once the fast path has failed


def _scaled_mm_supported(x: Tensor, weight: Tensor, block: tuple[int, int]) -> bool:
    if _SCALED_MM_STATE["disabled"] is not None or not x.is_cuda or block != (128, 128):
        return False
    if not hasattr(F, "scaled_mm") or torch.version.cuda is None:
        return False
    # cuBLASLt blockwise scaling exists on Hopper only, from CUDA 12.9 (see torch's scaled_mm op tests).
    if torch.cuda.get_device_capability(x.device)[0] != 9:
        return False
    if tuple(int(v) for v in torch.version.cuda.split(".")[:2]) < (12, 9):
        return False
    n, k = weight.shape
    return n % 128 == 0 and k % 128 == 0


def _scaled_mm_linear(x: Tensor, weight: Tensor, scale_inv: Tensor, bias: Tensor | None) -> Tensor:
    # x [M, K] bf16/fp16; weight e4m3 [N, K]; scale_inv [N/128, K/128] -> [M, N] in x.dtype
    from torch.nn.functional import ScalingType, SwizzleType

    m, k = x.shape
    n = weight.shape[0]
    xq, xs = quantize_activation_per_token_group(x)
    # cuBLASLt wants M-major activation scales [M, K/128] and a K-major weight-scale grid padded to 4 columns.
    xs = xs.t().contiguous().t()
    kb = k // 128
    ws = scale_inv.new_zeros(n // 128, (kb + 3) // 4 * 4, dtype=torch.float32)
    ws[:, :kb] = scale_inv
    ws = ws[:, :kb].t()                                                   # [K/128, N/128]
    out = F.scaled_mm(xq, weight.t(), xs, ScalingType.BlockWise1x128, ws, ScalingType.BlockWise128x128,
                      swizzle_a=SwizzleType.NO_SWIZZLE, swizzle_b=SwizzleType.NO_SWIZZLE,
                      output_dtype=x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16)
    out = out.to(x.dtype)
    return out if bias is None else out + bias


def fp8_linear(x: Tensor, weight: Tensor, scale_inv: Tensor, bias: Tensor | None = None,
               block: tuple[int, int] = BLOCK) -> Tensor:
    """y = x @ dequant(weight).T + bias for x [..., K], weight e4m3 [N, K] -> [..., N]."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    if x2.shape[0] > 0 and _scaled_mm_supported(x2, weight, block):
        try:
            return _scaled_mm_linear(x2, weight, scale_inv, bias).reshape(*lead, -1)
        except Exception as e:  # unsupported shape/build/driver: never fail the forward over it
            _SCALED_MM_STATE["disabled"] = str(e)
            warnings.warn(f"FP8 scaled_mm path unavailable ({e}); dequantizing FP8 weights instead", stacklevel=2)
    return _dequant_linear(x2, weight, scale_inv, bias, block).reshape(*lead, -1)


# ----------------------------------------------------------------------------------------------------------
# modules


class Fp8Linear(nn.Module):
    """A bias-optional linear layer with an FP8 block-quantized weight (checkpoint names: weight, weight_scale_inv)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, block: tuple[int, int] = BLOCK,
                 device: torch.device | str | None = None, bias_dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.in_features, self.out_features, self.block = in_features, out_features, tuple(block)
        grid = scale_grid_shape(out_features, in_features, self.block)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=FP8_DTYPE, device=device),
                                   requires_grad=False)
        self.weight_scale_inv = nn.Parameter(torch.empty(grid, dtype=torch.float32, device=device), requires_grad=False)
        self.bias = (nn.Parameter(torch.empty(out_features, dtype=bias_dtype, device=device), requires_grad=False)
                     if bias else None)

    @classmethod
    def from_float(cls, weight: Tensor, bias: Tensor | None = None, block: tuple[int, int] = BLOCK) -> "Fp8Linear":
        """Quantize a high-precision weight [N, K] (e.g. an nn.Linear's) into a new Fp8Linear."""
        n, k = weight.shape
        layer = cls(k, n, bias=bias is not None, block=block, device=weight.device,
                    bias_dtype=bias.dtype if bias is not None else torch.bfloat16)
        q, s = quantize_fp8_block(weight.detach(), block)
        layer.weight.data.copy_(q)
        layer.weight_scale_inv.data.copy_(s)
        if bias is not None:
            layer.bias.data.copy_(bias.detach())
        return layer

    def forward(self, x: Tensor) -> Tensor:  # [..., K] -> [..., N]
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return fp8_linear(x, self.weight, self.weight_scale_inv, bias, self.block)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, block={self.block}"


class Fp8Experts(nn.Module):
    """All experts of one MoE layer with FP8 weights, stacked: one module instead of E*3 Fp8Linear modules.

    gate_up_proj e4m3 [E, 2I, H] with gate_up_proj_scale_inv [E, 2*ceil(I/128), ceil(H/128)] (the gate grid then
    the up grid: gate and up are quantized separately, as per-expert checkpoints store them, so I need not be a
    multiple of 128; for I % 128 == 0 this is the usual [E, 2I/128, H/128] grid); down_proj e4m3 [E, H, I] with
    down_proj_scale_inv [E, ceil(H/128), ceil(I/128)]. Same call contract as `model.moe.Experts`.
    """

    def __init__(self, num_experts: int, hidden_size: int, moe_intermediate_size: int, block: tuple[int, int] = BLOCK,
                 device: torch.device | str | None = None):
        super().__init__()
        e, h, i = num_experts, hidden_size, moe_intermediate_size
        self.num_experts, self.hidden_size, self.intermediate_size, self.block = e, h, i, tuple(block)
        gi, gh = scale_grid_shape(i, h, self.block)
        self.gate_up_proj = nn.Parameter(torch.empty(e, 2 * i, h, dtype=FP8_DTYPE, device=device), requires_grad=False)
        self.gate_up_proj_scale_inv = nn.Parameter(torch.empty(e, 2 * gi, gh, dtype=torch.float32, device=device),
                                                   requires_grad=False)
        self.down_proj = nn.Parameter(torch.empty(e, h, i, dtype=FP8_DTYPE, device=device), requires_grad=False)
        self.down_proj_scale_inv = nn.Parameter(torch.empty(e, *scale_grid_shape(h, i, self.block), dtype=torch.float32,
                                                            device=device), requires_grad=False)

    @classmethod
    def from_float(cls, gate_up_proj: Tensor, down_proj: Tensor, block: tuple[int, int] = BLOCK) -> "Fp8Experts":
        """Quantize stacked high-precision experts gate_up [E, 2I, H] and down [E, H, I]."""
        e, two_i, h = gate_up_proj.shape
        m = cls(e, h, two_i // 2, block, device=gate_up_proj.device)
        gate, up = gate_up_proj.detach().chunk(2, dim=1)
        (gq, gs), (uq, us) = quantize_fp8_block(gate, block), quantize_fp8_block(up, block)
        m.gate_up_proj.data.copy_(torch.cat([gq, uq], dim=1))
        m.gate_up_proj_scale_inv.data.copy_(torch.cat([gs, us], dim=1))
        dq, ds = quantize_fp8_block(down_proj.detach(), block)
        m.down_proj.data.copy_(dq)
        m.down_proj_scale_inv.data.copy_(ds)
        return m

    def _gate_up(self, x: Tensor, e: int) -> Tensor:  # [n, H] -> [n, 2I]
        i, gi = self.intermediate_size, self.gate_up_proj_scale_inv.shape[1] // 2
        w, s = self.gate_up_proj[e], self.gate_up_proj_scale_inv[e]
        if i % self.block[0] == 0:  # the two grids tile [2I, H] exactly: one GEMM
            return fp8_linear(x, w, s, None, self.block)
        return torch.cat([fp8_linear(x, w[:i], s[:gi], None, self.block),
                          fp8_linear(x, w[i:], s[gi:], None, self.block)], dim=-1)

    def forward(self, x_sorted: Tensor, tokens_per_expert: list[int]) -> Tensor:
        from model.moe import grouped_by_expert  # model.moe imports this module

        return grouped_by_expert(x_sorted, tokens_per_expert, self.expert)

    def expert(self, x: Tensor, e: int) -> Tensor:  # [n, H] -> [n, H]
        gate, up = self._gate_up(x, e).chunk(2, dim=-1)
        return fp8_linear(F.silu(gate) * up, self.down_proj[e], self.down_proj_scale_inv[e], None, self.block)


def fp8_weight_bytes(module: nn.Module) -> int:
    """Resident bytes of the FP8 weights and their scales held by `module` (recursively)."""
    total = 0
    for m in module.modules():
        if isinstance(m, (Fp8Linear, Fp8Experts)):
            total += sum(p.numel() * p.element_size() for p in m.parameters(recurse=False) if p is not getattr(m, "bias", None))
    return total
