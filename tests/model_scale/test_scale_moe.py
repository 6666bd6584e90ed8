"""SparseMoeBlock parity with transformers' Qwen3-VL-MoE block, and expert weights read from every on-disk layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import Qwen3VLMoeTextConfig
from transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe import (
    Qwen3VLMoeTextModel,
    Qwen3VLMoeTextSparseMoeBlock,
)

from model.moe import SparseMoeBlock, load_expert_weights, load_fp8_expert_weights
from model.quant import Fp8Experts, dequantize_fp8_block

H, I, E, K = 64, 48, 8, 2


def tf_block(dtype=torch.float32, seed=0) -> Qwen3VLMoeTextSparseMoeBlock:
    cfg = Qwen3VLMoeTextConfig(hidden_size=H, moe_intermediate_size=I, num_experts=E, num_experts_per_tok=K)
    block = Qwen3VLMoeTextSparseMoeBlock(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # a standalone block is not initialised by transformers; give it real weights
        block.gate.weight.copy_(torch.randn(E, H, generator=g))
        block.experts.gate_up_proj.copy_(torch.randn(E, 2 * I, H, generator=g) * H ** -0.5)
        block.experts.down_proj.copy_(torch.randn(E, H, I, generator=g) * I ** -0.5)
    return block.to(dtype).eval()


def our_block(ref: Qwen3VLMoeTextSparseMoeBlock) -> SparseMoeBlock:
    block = SparseMoeBlock(H, I, E, K, norm_topk_prob=True, dtype=ref.gate.weight.dtype)
    missing, unexpected = block.load_state_dict(ref.state_dict(), strict=True)
    assert not missing and not unexpected
    return block.eval()


@torch.no_grad()
def test_moe_block_matches_transformers_fp32():
    ref = tf_block()
    ours = our_block(ref)
    x = torch.randn(1, 300, H, generator=torch.Generator().manual_seed(1))
    want = ref(x)[0]
    got = ours(x[0])
    # every expert must actually be used, else the grouping code is barely exercised
    _, ids = ours.route(x[0])
    assert torch.bincount(ids.flatten(), minlength=E).min() > 0
    assert got.shape == (300, H) and got.dtype == torch.float32
    assert (got - want).abs().max().item() <= 1e-5
    assert want.abs().max().item() > 0.1  # a non-trivial output


@torch.no_grad()
def test_moe_block_matches_transformers_bf16():
    ref = tf_block(torch.bfloat16)
    ours = our_block(ref)
    x = torch.randn(1, 200, H, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    want, got = ref(x)[0].float(), ours(x[0]).float()
    # transformers accumulates the k expert outputs in bf16, we in float32: a bf16 rounding or two apart
    assert (got - want).abs().max().item() <= 2 ** -7 * want.abs().max().item()


@torch.no_grad()
def test_routing_weights_and_norm_topk_prob():
    ref = tf_block()
    x = torch.randn(50, H, generator=torch.Generator().manual_seed(3))
    renorm = our_block(ref)
    w, ids = renorm.route(x)
    assert torch.allclose(w.sum(-1), torch.ones(50))
    raw = SparseMoeBlock(H, I, E, K, norm_topk_prob=False)
    raw.load_state_dict(ref.state_dict())
    w_raw, ids_raw = raw.route(x)
    probs = torch.softmax(x @ ref.gate.weight.T, -1)
    assert torch.equal(ids, ids_raw)
    assert torch.allclose(w_raw, probs.gather(1, ids), atol=1e-6)
    assert (w_raw.sum(-1) < 1).all()


@torch.no_grad()
def test_moe_block_with_one_token_and_unused_experts():
    ref = tf_block()
    ours = our_block(ref)
    x = torch.randn(1, 1, H)
    assert (ours(x[0]) - ref(x)[0]).abs().max().item() <= 1e-5


@torch.no_grad()
def test_moe_block_with_fp8_experts_matches_dequantized_reference():
    ref = tf_block()
    ours = our_block(ref)
    fp8 = Fp8Experts.from_float(ref.experts.gate_up_proj, ref.experts.down_proj)
    ours.experts = fp8
    # reference: transformers' block with the FP8 weights dequantized back to float32
    i = I
    gq, uq = fp8.gate_up_proj[:, :i], fp8.gate_up_proj[:, i:]
    gs, us = fp8.gate_up_proj_scale_inv.chunk(2, dim=1)
    ref.experts.gate_up_proj.copy_(torch.cat([dequantize_fp8_block(gq, gs, torch.float32),
                                              dequantize_fp8_block(uq, us, torch.float32)], dim=1))
    ref.experts.down_proj.copy_(dequantize_fp8_block(fp8.down_proj, fp8.down_proj_scale_inv, torch.float32))
    x = torch.randn(1, 100, H, generator=torch.Generator().manual_seed(4))
    assert (ours(x[0]) - ref(x)[0]).abs().max().item() <= 1e-5


# ---------------------------------------------------------------------------------------------------------
# on-disk layouts


def _reader(path: Path):
    f = safe_open(str(path), framework="pt")
    return f.get_tensor, set(f.keys())


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The same 2-layer MoE text model written three ways: transformers' save_pretrained, Hub-fused, per-expert."""
    root = tmp_path_factory.mktemp("moe_layouts")
    cfg = Qwen3VLMoeTextConfig(hidden_size=H, intermediate_size=96, moe_intermediate_size=I, num_experts=E,
                               num_experts_per_tok=K, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=16, vocab_size=256)
    torch.manual_seed(0)
    model = Qwen3VLMoeTextModel(cfg)
    model.save_pretrained(root / "tf")
    get, names = _reader(root / "tf" / "model.safetensors")
    tensors = {n: get(n) for n in names}
    hub, per = {}, {}
    for n, t in tensors.items():
        if n.endswith("experts.gate_up_proj") or n.endswith("experts.down_proj"):
            hub[n] = t.transpose(1, 2).contiguous()
            pre = n.rsplit(".", 1)[0] + "."
            for e in range(E):
                if n.endswith("gate_up_proj"):
                    per[f"{pre}{e}.gate_proj.weight"] = t[e, :I].contiguous()
                    per[f"{pre}{e}.up_proj.weight"] = t[e, I:].contiguous()
                else:
                    per[f"{pre}{e}.down_proj.weight"] = t[e].contiguous()
        else:
            hub[n] = per[n] = t
    save_file(hub, root / "hub.safetensors")
    save_file(per, root / "per_expert.safetensors")
    return {"tf": root / "tf" / "model.safetensors", "hub": root / "hub.safetensors",
            "per_expert": root / "per_expert.safetensors", "model": model}


def test_save_pretrained_writes_the_transformers_layout(layouts):
    get, names = _reader(layouts["tf"])
    assert tuple(get("layers.1.mlp.experts.gate_up_proj").shape) == (E, 2 * I, H)
    get, names = _reader(layouts["hub"])
    assert tuple(get("layers.1.mlp.experts.gate_up_proj").shape) == (E, H, 2 * I)


@pytest.mark.parametrize("layer", [0, 1])
def test_all_layouts_give_identical_tensors(layouts, layer):
    prefix = f"layers.{layer}.mlp.experts."
    model = layouts["model"]
    want = model.layers[layer].mlp.experts
    for kind in ("tf", "hub", "per_expert"):
        get, names = _reader(layouts[kind])
        got = load_expert_weights(get, names, prefix, E, H, I)
        assert set(got) == {"gate_up_proj", "down_proj"}
        assert torch.equal(got["gate_up_proj"], want.gate_up_proj.data), kind
        assert torch.equal(got["down_proj"], want.down_proj.data), kind
        assert got["gate_up_proj"].is_contiguous() and got["down_proj"].is_contiguous()


def test_loaded_experts_reproduce_transformers_layer(layouts):
    model = layouts["model"]
    ref = model.layers[0].mlp.eval()
    get, names = _reader(layouts["hub"])
    block = SparseMoeBlock(H, I, E, K, norm_topk_prob=True)
    w = load_expert_weights(get, names, "layers.0.mlp.experts.", E, H, I)
    block.load_state_dict({"gate.weight": get("layers.0.mlp.gate.weight"),
                           "experts.gate_up_proj": w["gate_up_proj"], "experts.down_proj": w["down_proj"]})
    x = torch.randn(1, 64, H)
    with torch.no_grad():
        assert (block(x[0]) - ref(x)[0]).abs().max().item() <= 1e-5


def test_square_fused_shapes_are_refused():
    # H == 2I: [E, H, 2I] and [E, 2I, H] are the same shape, so the layout cannot be known
    names = {"p.gate_up_proj", "p.down_proj"}
    t = {"p.gate_up_proj": torch.zeros(2, 32, 32), "p.down_proj": torch.zeros(2, 32, 16)}
    with pytest.raises(ValueError, match="cannot be told apart"):
        load_expert_weights(t.__getitem__, names, "p.", 2, 32, 16)


def test_unknown_and_mixed_layouts_are_refused(layouts):
    get, names = _reader(layouts["tf"])
    with pytest.raises(ValueError, match=r"shape \(8, 96, 64\) matches neither"):
        load_expert_weights(get, names, "layers.0.mlp.experts.", E, H, 40)  # wrong moe_intermediate_size
    with pytest.raises(ValueError, match="no expert weights under 'layers.0.mlp.nope.'"):
        load_expert_weights(get, names, "layers.0.mlp.nope.", E, H, I)
    mixed = names | {"layers.0.mlp.experts.0.gate_proj.weight"}
    with pytest.raises(ValueError, match="ambiguous expert layout"):
        load_expert_weights(get, mixed, "layers.0.mlp.experts.", E, H, I)
    get, names = _reader(layouts["per_expert"])
    with pytest.raises(ValueError, match="incomplete: 3 missing"):
        load_expert_weights(get, names - {f"layers.0.mlp.experts.7.{p}.weight" for p in
                                          ("gate_proj", "up_proj", "down_proj")}, "layers.0.mlp.experts.", E, H, I)
    with pytest.raises(ValueError, match="more experts than num_experts=4"):
        load_expert_weights(get, names, "layers.0.mlp.experts.", 4, H, I)


def test_fp8_per_expert_layout_reads_into_fp8_experts(layouts, tmp_path):
    from model.quant import quantize_fp8_block

    get, names = _reader(layouts["per_expert"])
    fp8 = {}
    for n in names:
        t = get(n)
        if ".experts." in n:
            fp8[n], fp8[n.replace(".weight", ".weight_scale_inv")] = quantize_fp8_block(t)
        else:
            fp8[n] = t
    save_file(fp8, tmp_path / "fp8.safetensors")
    get8, names8 = _reader(tmp_path / "fp8.safetensors")
    with pytest.raises(ValueError, match="FP8-quantized"):
        load_expert_weights(get8, names8, "layers.0.mlp.experts.", E, H, I)
    got = load_fp8_expert_weights(get8, names8, "layers.0.mlp.experts.", E, H, I)
    want = Fp8Experts.from_float(layouts["model"].layers[0].mlp.experts.gate_up_proj.data,
                                 layouts["model"].layers[0].mlp.experts.down_proj.data)
    module = Fp8Experts(E, H, I)
    module.load_state_dict(got, strict=True)
    for name, p in want.state_dict().items():
        assert torch.equal(got[name].view(torch.uint8) if p.dtype == torch.float8_e4m3fn else got[name],
                           p.view(torch.uint8) if p.dtype == torch.float8_e4m3fn else p), name
    with pytest.raises(ValueError, match="not FP8-quantized"):
        load_fp8_expert_weights(get, names, "layers.0.mlp.experts.", E, H, I)
