"""FP8 checkpoints end to end: `qvl-agent quantize --fp8` output loaded by Qwen3VL (weights stay float8 in memory)
vs transformers running a dequantized bf16 copy of the same checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from transformers import AutoModelForImageTextToText

from model import Qwen3VL
from model.cpu import PackedLinear
from model.config import Qwen3VLConfig
from model.quant import FP8_DTYPE, Fp8Experts, Fp8Linear, fp8_weight_bytes

POSITIONS = (2, 260)   # 520 positions


def random_prompts() -> torch.Tensor:
    return torch.randint(0, 150_000, POSITIONS, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("kind", ["dense", "moe"])
def test_fp8_weights_stay_fp8_and_use_half_the_memory(kind, fp8_models, record_property):
    ours = Qwen3VL.from_pretrained(fp8_models[f"{kind}_fp8"], dtype=torch.bfloat16)
    fp8_modules = {n: m for n, m in ours.named_modules() if isinstance(m, (Fp8Linear, Fp8Experts))}
    layers = ours.config.text.num_hidden_layers
    # q/k/v/o of every layer, plus gate/up/down (dense) or one Fp8Experts (MoE) per layer
    assert len(fp8_modules) == layers * (4 + (1 if kind == "moe" else 3))
    for name, m in fp8_modules.items():
        for pname, p in m.named_parameters():
            assert p.dtype == (torch.float32 if pname.endswith("scale_inv") else FP8_DTYPE), (name, pname)
    # what stays bf16: vision tower, embeddings, head, norms, routers
    others = [p for n, p in ours.named_parameters() if not any(n.startswith(f + ".") for f in fp8_modules)]
    assert others and all(p.dtype == torch.bfloat16 for p in others)
    assert all(isinstance(m, (nn.Linear, PackedLinear)) for m in ours.visual.modules() if "Linear" in type(m).__name__)
    if kind == "moe":
        assert ours.language_model.layers[0].mlp.gate.weight.dtype == torch.bfloat16

    # resident bytes of the quantized weights (FP8 + float32 scales) vs the same weights in bf16
    fp8_bytes = fp8_weight_bytes(ours)
    bf16_bytes = sum(p.numel() * 2 for m in fp8_modules.values() for n, p in m.named_parameters()
                     if p.dtype == FP8_DTYPE)
    ratio = fp8_bytes / bf16_bytes
    record_property(f"fp8_{kind}_memory_ratio", ratio)
    print(f"\n[{kind}] quantized linears resident: {fp8_bytes} bytes vs {bf16_bytes} in bf16 -> ratio {ratio:.4f}")
    assert ratio <= 0.55


@pytest.mark.parametrize("kind", ["dense", "moe"])
def test_fp8_logits_match_transformers_on_dequantized_weights(kind, fp8_models, record_property):
    ours = Qwen3VL.from_pretrained(fp8_models[f"{kind}_fp8"], dtype=torch.bfloat16)
    ref = AutoModelForImageTextToText.from_pretrained(fp8_models[f"{kind}_deq"], dtype=torch.bfloat16).eval()
    ids = random_prompts()
    with torch.no_grad():
        want = ref(input_ids=ids).logits.float()
    got = ours.logits(ids).float()
    assert got.shape == want.shape == (*POSITIONS, 151936)
    delta = (got - want).abs().max().item()
    agree = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    record_property(f"fp8_{kind}_max_abs_logit_delta", delta)
    record_property(f"fp8_{kind}_top1_agreement", agree)
    print(f"\n[{kind} fp8, bf16 activations] {ids.numel()} positions: max|Δ| = {delta:.3e} "
          f"(|logits| max {want.abs().max():.1f}), top-1 agreement {agree:.2%}")
    assert agree >= 0.99
    assert delta <= 0.05 * want.abs().max().item()


def test_bf16_scales_on_disk_are_upcast(fp8_models, tmp_path):
    """Qwen's FP8 releases store weight_scale_inv in bf16; the runtime keeps float32 scales either way."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src = fp8_models["dense_fp8"]
    dst = tmp_path / "bf16_scales"
    dst.mkdir()
    for f in src.iterdir():
        if f.suffix == ".safetensors":
            with safe_open(str(f), "pt") as h:
                tensors = {n: h.get_tensor(n) for n in h.keys()}
            save_file({n: t.to(torch.bfloat16) if n.endswith("scale_inv") else t for n, t in tensors.items()},
                      str(dst / f.name), metadata={"format": "pt"})
        elif f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    a = Qwen3VL.from_pretrained(src, dtype=torch.float32)
    b = Qwen3VL.from_pretrained(dst, dtype=torch.float32)
    sa = a.language_model.layers[0].self_attn.q_proj.weight_scale_inv
    sb = b.language_model.layers[0].self_attn.q_proj.weight_scale_inv
    assert sb.dtype == torch.float32 and torch.equal(sb, sa.to(torch.bfloat16).float())
    ids = random_prompts()[:, :32]
    la, lb = a.logits(ids), b.logits(ids)
    assert (la - lb).abs().max().item() <= 0.02 * la.abs().max().item()


def test_quantization_config_errors(fp8_models, tmp_path):
    raw = json.loads((fp8_models["dense_fp8"] / "config.json").read_text())
    for change, message in ((dict(quant_method="awq"), "quant_method 'awq' is not supported"),
                            (dict(weight_block_size=None), "per-tensor fp8"),
                            (dict(activation_scheme="static"), "activation_scheme 'static'")):
        bad = dict(raw, quantization_config=dict(raw["quantization_config"], **change))
        with pytest.raises(ValueError, match=message):
            Qwen3VLConfig.from_dict(bad)
    # FP8 tensors without a quantization_config
    folder = tmp_path / "no_qconfig"
    folder.mkdir()
    for f in fp8_models["dense_fp8"].iterdir():
        if f.is_file():
            (folder / f.name).write_bytes(f.read_bytes())
    (folder / "config.json").write_text(json.dumps({k: v for k, v in raw.items() if k != "quantization_config"}))
    with pytest.raises(ValueError, match="holds float8 weights .* no quantization_config"):
        Qwen3VL.from_pretrained(folder)
