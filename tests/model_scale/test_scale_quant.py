"""FP8 block quantization: bit-equal to transformers' Fp8Quantize, Fp8Linear/Fp8Experts vs dequantized references."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from transformers.integrations.finegrained_fp8 import Fp8Dequantize, Fp8Quantize
from transformers.utils.quantization_config import FineGrainedFP8Config

import model.quant as quant
from model.moe import Experts
from model.quant import (
    FP8_DTYPE,
    Fp8Experts,
    Fp8Linear,
    dequantize_fp8_block,
    fp8_weight_bytes,
    quantize_activation_per_token_group,
    quantize_fp8_block,
)

_HF = types.SimpleNamespace(quantization_config=FineGrainedFP8Config(weight_block_size=(128, 128)))


def tf_quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = Fp8Quantize(_HF).convert({"x.weight": w})
    return out["x.weight"], out["x.weight_scale_inv"]


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.uint8) if t.dtype == FP8_DTYPE else t.view(torch.int32)


def random_weight(*shape, dtype=torch.bfloat16, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # heavy-tailed rows/blocks so every block gets its own scale, plus exact zeros
    w = torch.randn(*shape, generator=g) * torch.exp(torch.randn(*shape[:-1], 1, generator=g) * 2)
    w[..., :3, :5] = 0
    return w.to(dtype)


@pytest.mark.parametrize("shape,dtype", [((256, 384), torch.bfloat16), ((128, 128), torch.float32),
                                         ((4, 256, 128), torch.bfloat16), ((384, 1024), torch.float16)])
def test_quantize_bit_equal_to_transformers(shape, dtype):
    w = random_weight(*shape, dtype=dtype)
    q, s = quantize_fp8_block(w)
    tq, ts = tf_quantize(w)
    assert q.dtype == FP8_DTYPE and s.dtype == torch.float32
    assert s.shape == (*shape[:-2], shape[-2] // 128, shape[-1] // 128)
    assert torch.equal(bits(q), bits(tq)) and torch.equal(bits(s), bits(ts))


@pytest.mark.parametrize("shape", [(200, 300), (64, 1000), (129, 129), (3, 200, 72)])
def test_partial_blocks_equal_transformers_on_the_zero_padded_weight(shape):
    # transformers passes shapes that are not multiples of 128 through unquantized; zero padding to whole
    # blocks changes no amax, so its result on the padded weight, cropped, is the definition for partial blocks
    w = random_weight(*shape, seed=1)
    *lead, n, k = shape
    padded = F.pad(w, (0, -k % 128, 0, -n % 128))
    tq, ts = tf_quantize(padded)
    q, s = quantize_fp8_block(w)
    assert q.shape == w.shape and s.shape == (*lead, -(-n // 128), -(-k // 128))
    assert torch.equal(bits(q), bits(tq[..., :n, :k])) and torch.equal(bits(s), bits(ts))
    assert torch.equal(Fp8Quantize(_HF).convert({"x.weight": w})["x.weight"], w)  # the pass-through, for the record


def test_all_zero_block_and_extremes():
    w = torch.zeros(256, 256)
    w[128:, 128:] = torch.linspace(-1e4, 1e4, 128 * 128).view(128, 128)
    q, s = quantize_fp8_block(w)
    assert torch.equal(s[0], torch.ones(2)) and q[:128].float().abs().max() == 0
    assert s[1, 1].item() == pytest.approx(1e4 / 448)
    assert q[128:, 128:].float().abs().max().item() == 448.0
    back = dequantize_fp8_block(q, s, torch.float32)
    assert (back - w).abs().max().item() <= 1e4 * 2 ** -4  # e4m3 has 3 mantissa bits


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_dequantize_bit_equal_to_transformers(dtype):
    w = random_weight(3, 256, 384, seed=2)
    q, s = quantize_fp8_block(w)
    want = Fp8Dequantize(_HF)._dequantize_one(q, s, output_dtype=dtype)
    got = dequantize_fp8_block(q, s, dtype)
    assert got.dtype == dtype and torch.equal(got, want)
    rel = ((got.float() - w.float()).norm() / w.float().norm()).item()
    assert 1e-3 < rel < 0.05  # FP8 error is real but small


def test_dequantize_rejects_wrong_scale_grid():
    q, s = quantize_fp8_block(random_weight(256, 256))
    with pytest.raises(ValueError, match=r"does not match weight \(256, 256\)"):
        dequantize_fp8_block(q, s[:1])


@pytest.mark.parametrize("n,k,bias", [(384, 256, False), (200, 300, True), (1000, 130, False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fp8_linear_matches_linear_on_dequantized_weight(n, k, bias, dtype, monkeypatch):
    w = random_weight(n, k, seed=3)
    b = torch.randn(n, dtype=dtype) if bias else None
    layer = Fp8Linear.from_float(w, b)
    x = torch.randn(5, 7, k).to(dtype)
    ref = F.linear(x, dequantize_fp8_block(layer.weight, layer.weight_scale_inv, dtype), b)
    got = layer(x)
    assert got.shape == (5, 7, n) and got.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert (got - ref).abs().max().item() <= tol * ref.abs().max().item()
    # the chunked path (128-row blocks dequantized one after another) gives the same numbers
    monkeypatch.setattr(quant, "_DEQUANT_CHUNK_ELEMENTS", 128 * k)
    chunked = layer(x)
    assert (chunked - ref).abs().max().item() <= tol * ref.abs().max().item()


def test_fp8_linear_state_dict_names_and_dtypes():
    layer = Fp8Linear(300, 200, bias=True)
    sd = layer.state_dict()
    assert {k: (tuple(v.shape), v.dtype) for k, v in sd.items()} == {
        "weight": ((200, 300), FP8_DTYPE), "weight_scale_inv": ((2, 3), torch.float32), "bias": ((200,), torch.bfloat16)}


def test_memory_ratio_of_quantized_linears():
    # resident bytes of FP8 weight + fp32 scales vs the same weights in bf16, on real Qwen3-VL shapes (8B: H=4096)
    shapes = [(4096, 4096), (1024, 4096), (1024, 4096), (4096, 4096), (12288, 4096), (12288, 4096), (4096, 12288)]
    layers = torch.nn.ModuleList(Fp8Linear(k, n) for n, k in shapes)
    fp8 = fp8_weight_bytes(layers)
    assert fp8 == sum(p.untyped_storage().nbytes() for p in layers.parameters())
    bf16 = sum(n * k * 2 for n, k in shapes)
    ratio = fp8 / bf16
    print(f"\nFP8 linear bytes {fp8} vs bf16 {bf16}: ratio {ratio:.5f}")
    assert ratio <= 0.55 and ratio == pytest.approx(0.5, abs=1e-3)


@torch.no_grad()
@pytest.mark.parametrize("i", [256, 96])  # 96: gate and up grids do not tile 2I, the split path
def test_fp8_experts_match_dequantized_experts(i):
    e, h = 4, 160
    g = torch.Generator().manual_seed(5)
    gate_up, down = torch.randn(e, 2 * i, h, generator=g), torch.randn(e, h, i, generator=g)
    fp8 = Fp8Experts.from_float(gate_up, down)
    ref = Experts(e, h, i)
    gq, uq = fp8.gate_up_proj[:, :i], fp8.gate_up_proj[:, i:]
    gs, us = fp8.gate_up_proj_scale_inv.chunk(2, dim=1)
    ref.gate_up_proj.copy_(torch.cat([dequantize_fp8_block(gq, gs, torch.float32),
                                      dequantize_fp8_block(uq, us, torch.float32)], 1))
    ref.down_proj.copy_(dequantize_fp8_block(fp8.down_proj, fp8.down_proj_scale_inv, torch.float32))
    counts = [5, 0, 11, 3]
    x = torch.randn(sum(counts), h, generator=g)
    want, got = ref(x, counts), fp8(x, counts)
    assert (got - want).abs().max().item() <= 1e-5 * want.abs().max().item()
    assert fp8.gate_up_proj_scale_inv.shape == (e, 2 * -(-i // 128), 2)
    # the gate grid quantized separately from the up grid: bit-equal to quantizing each half alone
    assert torch.equal(bits(fp8.gate_up_proj_scale_inv[:, :-(-i // 128)]), bits(quantize_fp8_block(gate_up[:, :i])[1]))


def test_per_token_group_activation_quant_emulates_block_gemm():
    # the CUDA path's arithmetic, emulated on CPU: y = sum_kb (xq . wq) * xs * ws stays within FP8 error
    g = torch.Generator().manual_seed(6)
    x, w = torch.randn(16, 512, generator=g), random_weight(256, 512, dtype=torch.float32, seed=6)
    xq, xs = quantize_activation_per_token_group(x)
    assert xq.dtype == FP8_DTYPE and xs.shape == (16, 4)
    wq, ws = quantize_fp8_block(w)
    y = sum((xq[:, kb * 128:(kb + 1) * 128].float() @ wq[:, kb * 128:(kb + 1) * 128].float().T)
            * xs[:, kb:kb + 1] * ws[:, kb].repeat_interleave(128)[None] for kb in range(4))
    ref = x @ w.T
    assert ((y - ref).norm() / ref.norm()).item() < 0.06
