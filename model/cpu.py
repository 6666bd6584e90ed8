"""CPU fast paths for the text decoder: oneDNN-packed linears, and int8 weights (`quantize="int8"`).

Why: a decode step is one GEMV per weight matrix, so its speed is the rate at which the weights stream from
memory. torch's bf16 `F.linear` on CPU reaches about half of that (measured: 15 GB/s vs 28.6 GB/s for the
151,936 x 2048 head on one Zen 5 core); the same oneDNN matmul on a weight packed once into oneDNN's blocked
layout (`torch.ops.mkldnn._reorder_linear_weight`, what torch.compile's CPU freezing uses) reaches the read
bandwidth, gives
bit-identical bf16 results and float32 results equal up to reduction order (~1e-6 relative), and is also
faster for GEMMs (prefill, vision: about 2x in float32). `pack_for_cpu` swaps every nn.Linear of the text
decoder, the lm_head and the vision encoder for one, and each MoE expert's matrices likewise.

The packed weight replaces the plain one (no second copy), except for a tied lm_head: the embedding keeps
its plain rows for the lookup, so a tied head costs one more vocab x hidden matrix.

Int8 (like llama.cpp's q8_0, which also quantizes activations): weights symmetric int8 with one float32
scale per output row; activations quantized per token (symmetric, scale amax/127) on the fly, so every
matmul is an int8 x int8 oneDNN GEMM (VNNI) reading half the bytes of bf16. Per-token scales with one
oneDNN call: each row is divided by its own amax before the (global) uint8 quantization with zero point 128,
and the output row multiplied back by it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

QUANTIZE_CHOICES = ("int8",)
_TINY = torch.finfo(torch.float32).tiny


def packing_supported(dtype: torch.dtype, device: torch.device) -> bool:
    """oneDNN packed linears exist for float32 everywhere and for bf16 where the CPU has bf16 kernels."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16:
        return torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return dtype == torch.float32


class PackedLinear(nn.Module):
    """y = x @ W.T + b with W held in oneDNN's blocked layout (CPU, float32 or bf16)."""

    def __init__(self, weight: Tensor, bias: Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), None)  # opaque
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(weight.dtype), requires_grad=False)

    @property
    def weight(self) -> Tensor:
        """The weight in the plain [out, in] layout: a copy, for inspection (forward never uses it)."""
        return self.packed.to_dense()

    def forward(self, x: Tensor) -> Tensor:  # [..., in] -> [..., out]
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, packed"


def quantize_int8_rows(weight: Tensor) -> tuple[Tensor, Tensor]:
    """W [N, K] -> (int8 [N, K], float32 scales [N]) with W ~= q * scale[:, None] (symmetric, per row)."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=_TINY) / 127
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


class Int8Linear(nn.Module):
    """Int8 weights (per-row scales) x per-token int8 activations, one oneDNN int8 GEMM; output in x's dtype."""

    def __init__(self, weight: Tensor, bias: Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        q, scale = quantize_int8_rows(weight)
        self.packed = torch.ops.onednn.qlinear_prepack(q, None)                    # opaque int8 [N, K]
        self.weight_scale = scale                                                   # [N] float32
        self._zero_points = torch.zeros(self.out_features, dtype=torch.int64)       # symmetric weights
        self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)

    @property
    def weight(self) -> Tensor:
        """The dequantized weight [out, in] float32: a copy, for inspection."""
        return self.packed.to_dense().float() * self.weight_scale[:, None]

    def forward(self, x: Tensor) -> Tensor:  # [..., in] -> [..., out]
        lead = x.shape[:-1]
        xf = x.reshape(-1, self.in_features).to(torch.float32, copy=True)   # quantized in place below
        if xf.shape[0] == 1:  # one token (decode): its scale is the tensor's, so oneDNN applies scale and bias
            scale = max(float(xf.abs().max()), _TINY) / 127
            xq = xf.div_(scale).round_().add_(128).to(torch.uint8)
            y = torch.ops.onednn.qlinear_pointwise(xq, scale, 128, self.packed, self.weight_scale, self._zero_points,
                                                   self.bias, 1.0, 0, x.dtype, "none", [], "")
            return y.reshape(*lead, self.out_features)
        amax = xf.abs().amax(dim=-1, keepdim=True).clamp(min=_TINY)              # [M, 1]
        xq = xf.mul_(127 / amax).round_().add_(128).to(torch.uint8)              # per-token symmetric, zp 128
        y = torch.ops.onednn.qlinear_pointwise(xq, 1 / 127, 128, self.packed, self.weight_scale, self._zero_points,
                                               None, 1.0, 0, torch.float32, "none", [], "")
        y = y * amax
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"


def check_quantize(quantize: str | None, device: torch.device) -> None:
    """Raise ValueError for an unknown scheme or one this device cannot run."""
    if quantize is None:
        return
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)} (or None), got {quantize!r}")
    if device.type != "cpu":
        raise ValueError(f"quantize={quantize!r} runs on CPU only (oneDNN int8 kernels), not on {device}")
    if not torch.backends.mkldnn.is_available():
        raise ValueError(f"quantize={quantize!r} needs a torch build with oneDNN (torch.backends.mkldnn)")


class PackedExperts(nn.Module):
    """`model.moe.Experts` with each expert's gate|up [2I, H] and down [H, I] matrices as one PackedLinear (or
    Int8Linear) each: the same call contract, without torch's slow bf16 GEMV on the stacked weights."""

    def __init__(self, experts: nn.Module, make: type[nn.Module]):
        super().__init__()
        self.num_experts, self.hidden_size = experts.num_experts, experts.hidden_size
        self.intermediate_size = experts.intermediate_size
        self.gate_up = nn.ModuleList(make(w, None) for w in experts.gate_up_proj)
        self.down = nn.ModuleList(make(w, None) for w in experts.down_proj)

    @property
    def gate_up_proj(self) -> Tensor:
        """[E, 2I, H] as `Experts` holds it: a copy, for inspection."""
        return torch.stack([m.weight for m in self.gate_up])

    @property
    def down_proj(self) -> Tensor:
        """[E, H, I]: a copy, for inspection."""
        return torch.stack([m.weight for m in self.down])

    def forward(self, x_sorted: Tensor, tokens_per_expert: list[int]) -> Tensor:
        from model.moe import grouped_by_expert

        return grouped_by_expert(x_sorted, tokens_per_expert, self.expert)

    def expert(self, x: Tensor, e: int) -> Tensor:                          # [n, H] -> [n, H]
        gate, up = self.gate_up[e](x).chunk(2, dim=-1)                      # [n, I] each
        return self.down[e](F.silu(gate) * up)


def pack_for_cpu(model: nn.Module, quantize: str | None = None) -> int:
    """Swap the nn.Linear modules of `model.language_model` and `model.lm_head` for PackedLinear, or Int8Linear
    with quantize="int8" (MoE routers stay PackedLinear: their top-k picks are what int8 would disturb most),
    unquantized MoE experts for PackedExperts, and the vision encoder's linears for PackedLinear (float in
    either case). Returns the number of modules swapped.
    Each module is swapped as soon as it is packed, so peak memory grows by one matrix, not by the model."""
    from model.moe import Experts

    modules = [(model.language_model, name, m) for name, m in model.language_model.named_modules()]
    modules.append((model, "lm_head", model.lm_head))
    # the vision encoder's linears are packed too (never quantized); its patch embedding reads its weight's dtype
    modules += [(model.visual, name, m) for name, m in model.visual.named_modules() if name != "patch_embed.proj"]
    linear = Int8Linear if quantize == "int8" else PackedLinear
    swapped = 0
    for root, name, module in modules:
        if type(module) is nn.Linear:
            keep_float = name.endswith("mlp.gate") or root is model.visual
            replacement = (PackedLinear if keep_float else linear)(module.weight, module.bias)
        elif type(module) is Experts:
            replacement = PackedExperts(module, linear)
        else:
            continue
        parent, _, child = name.rpartition(".")
        setattr(root.get_submodule(parent) if parent else root, child, replacement)
        swapped += 1
    return swapped
