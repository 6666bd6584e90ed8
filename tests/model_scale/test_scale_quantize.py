"""`qvl-agent quantize SRC DST --fp8` on tiny dense and MoE Qwen3-VL checkpoints built with transformers.

Reference for every check: the source model with each quantized weight replaced by dequantize(quantize(W)) and
everything else cast to bf16 ("fake-quant"). transformers 5.24 loads the dense FP8 output on CPU itself
(finegrained-fp8 quantizer, dequantize mode; needs accelerate). It cannot load per-expert FP8 experts of
Qwen3-VL-MoE (its qwen3_vl_moe conversion mapping only knows fused experts), so for MoE the test dequantizes the
output itself and loads that into transformers.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMoeConfig,
    Qwen3VLMoeForConditionalGeneration,
)

from agent.cli import main as cli_main
from model.quant import FP8_DTYPE, dequantize_fp8_block, quantize_fp8_block
from model.quantize import QUANTIZED_LINEAR, dequantize_state, parse_size
from tiny_checkpoints import read_tensors
from tiny_tokenizer import save_processor

VISION = dict(depth=2, hidden_size=32, num_heads=2, intermediate_size=64, patch_size=16, temporal_patch_size=2,
              spatial_merge_size=2, num_position_embeddings=64, out_hidden_size=128, deepstack_visual_indexes=[0, 1])
IDS = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
E, I_MOE = 4, 256


def text_config(intermediate_size: int = 256, **extra) -> dict:
    # H = 128 and 128-multiples (or < 128) elsewhere, so transformers' FP8 dequantizer can read the blocks
    return dict(vocab_size=151936, hidden_size=128, intermediate_size=intermediate_size, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [6, 5, 5],
                                 "mrope_interleaved": True}, **extra)


def build(kind: str, root: Path):
    torch.manual_seed(0)
    if kind == "moe":
        cfg = Qwen3VLMoeConfig(vision_config=VISION, text_config=text_config(num_experts=E, num_experts_per_tok=2,
                                                                               moe_intermediate_size=I_MOE),
                               tie_word_embeddings=False, **IDS)
        model = Qwen3VLMoeForConditionalGeneration(cfg).eval()
    else:
        inter = 320 if kind == "dense_partial" else 256  # 320: partial 128-blocks in gate/up/down
        cfg = Qwen3VLConfig(vision_config=VISION, text_config=text_config(inter), tie_word_embeddings=True, **IDS)
        model = Qwen3VLForConditionalGeneration(cfg).eval()
    src = root / f"{kind}_src"
    if kind == "moe":  # a bf16 source in the Hub's fused expert layout [E, H, 2I] / [E, I, H]
        model.to(torch.bfloat16).save_pretrained(src)
        path = src / "model.safetensors"
        with safe_open(str(path), "pt") as f:
            tensors = {n: f.get_tensor(n) for n in f.keys()}
        for n in tensors:
            if n.endswith(("experts.gate_up_proj", "experts.down_proj")):
                tensors[n] = tensors[n].transpose(1, 2).contiguous()
        save_file(tensors, str(path), metadata={"format": "pt"})
    else:  # float32 sources
        model.save_pretrained(src)
    save_processor(src)
    return model, src


def fake_quant_state(model) -> dict[str, torch.Tensor]:
    """What a perfect FP8 round trip gives, in transformers' parameter names and layout, all bf16."""
    state = {}
    for name, p in model.state_dict().items():
        if QUANTIZED_LINEAR.match(name):
            state[name] = dequantize_fp8_block(*quantize_fp8_block(p), torch.bfloat16)
        elif name.endswith("experts.gate_up_proj"):  # [E, 2I, H]: gate and up quantized separately
            gate, up = p.chunk(2, dim=1)
            state[name] = torch.cat([dequantize_fp8_block(*quantize_fp8_block(gate), torch.bfloat16),
                                     dequantize_fp8_block(*quantize_fp8_block(up), torch.bfloat16)], 1)
        elif name.endswith("experts.down_proj"):
            state[name] = dequantize_fp8_block(*quantize_fp8_block(p), torch.bfloat16)
        else:
            state[name] = p.to(torch.bfloat16)
    return state


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("quantize")
    out = {}
    for kind in ("dense", "moe", "dense_partial"):
        model, src = build(kind, root)
        dst = root / f"{kind}_fp8"
        assert cli_main(["quantize", str(src), str(dst), "--fp8", "--max-shard-size", "200KB"]) == 0
        out[kind] = (model, src, dst)
    return out


@pytest.mark.parametrize("kind", ["dense", "moe", "dense_partial"])
def test_config_follows_the_fp8_release_format(converted, kind):
    model, src, dst = converted[kind]
    src_cfg, cfg = json.loads((src / "config.json").read_text()), json.loads((dst / "config.json").read_text())
    q = cfg.pop("quantization_config")
    assert {k: v for k, v in q.items() if k != "modules_to_not_convert"} == {
        "quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}
    skip = set(q["modules_to_not_convert"])
    assert {"lm_head", "model.language_model.embed_tokens", "model.visual.merger.linear_fc1",
            "model.visual.blocks.1.attn.qkv", "model.visual.deepstack_merger_list.0.linear_fc2",
            "model.language_model.layers.1.input_layernorm", "model.language_model.layers.0.self_attn.q_norm",
            "model.visual.patch_embed.proj"} <= skip
    assert ("model.language_model.layers.0.mlp.gate" in skip) == (kind == "moe")
    assert not any(QUANTIZED_LINEAR.match(m + ".weight") or ".experts" in m for m in skip)
    assert cfg["dtype"] == "bfloat16"
    assert {k: v for k, v in cfg.items() if k not in ("dtype", "torch_dtype")} == \
        {k: v for k, v in src_cfg.items() if k not in ("dtype", "torch_dtype")}


@pytest.mark.parametrize("kind", ["dense", "moe", "dense_partial"])
def test_keys_dtypes_and_scales(converted, kind):
    model, src, dst = converted[kind]
    out = read_tensors(dst)
    ref = model.state_dict()
    n_fp8 = 0
    for name, p in ref.items():
        if ".experts." in name:
            continue
        t = out.pop(name, None)
        if t is None:
            assert name == "lm_head.weight" and kind != "moe"  # tied: not in the checkpoint
            continue
        if QUANTIZED_LINEAR.match(name):
            n_fp8 += 1
            s = out.pop(name + "_scale_inv")
            assert t.dtype == FP8_DTYPE and s.dtype == torch.float32
            assert s.shape == tuple(math.ceil(d / 128) for d in p.shape)
            q, want_s = quantize_fp8_block(p.to(torch.bfloat16) if kind == "moe" else p)
            assert torch.equal(t.view(torch.uint8), q.view(torch.uint8)) and torch.equal(s, want_s)
        else:
            assert t.dtype == torch.bfloat16 and torch.equal(t, p.to(torch.bfloat16)), name
    assert n_fp8 == 2 * (4 if kind == "moe" else 7)  # q/k/v/o (+ gate/up/down when dense), 2 layers
    if kind == "moe":
        for layer in range(2):
            experts = model.model.language_model.layers[layer].mlp.experts
            for e in range(E):
                pre = f"model.language_model.layers.{layer}.mlp.experts.{e}."
                w = {"gate_proj": experts.gate_up_proj[e, :I_MOE], "up_proj": experts.gate_up_proj[e, I_MOE:],
                     "down_proj": experts.down_proj[e]}
                for proj, src_w in w.items():
                    t, s = out.pop(pre + proj + ".weight"), out.pop(pre + proj + ".weight_scale_inv")
                    q, want_s = quantize_fp8_block(src_w.to(torch.bfloat16))
                    assert t.shape == src_w.shape and torch.equal(t.view(torch.uint8), q.view(torch.uint8))
                    assert torch.equal(s, want_s)
    assert not out, f"unexpected tensors: {sorted(out)[:5]}"


@pytest.mark.parametrize("kind", ["dense", "moe"])
def test_sharding_index_and_copied_files(converted, kind):
    _, src, dst = converted[kind]
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) >= 3 and files == sorted(p.name for p in dst.glob("*.safetensors"))
    assert all(f.endswith(f"-of-{len(files):05d}.safetensors") for f in files)
    tensors = read_tensors(dst)
    assert set(index["weight_map"]) == set(tensors)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    for f in files:  # shards of at most 200 KB, unless one unit (a tensor, one layer's experts) is larger
        with safe_open(str(dst / f), "pt") as h:
            size = sum(h.get_tensor(n).numel() * h.get_tensor(n).element_size() for n in h.keys())
            units = {n.split(".mlp.experts.")[0] if ".mlp.experts." in n else n.removesuffix("_scale_inv")
                     for n in h.keys()}
            assert size <= parse_size("200KB") or len(units) == 1, (f, size, units)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "preprocessor_config.json",
                 "generation_config.json"):
        assert (dst / name).read_bytes() == (src / name).read_bytes(), name
    assert not list(dst.parent.glob(f".{dst.name}.partial-*"))


@pytest.mark.parametrize("kind", ["dense", "moe"])
def test_memory_ratio_of_the_quantized_weights(converted, kind):
    model, _, dst = converted[kind]
    out = read_tensors(dst)
    quantized = [n for n, t in out.items() if t.dtype == FP8_DTYPE]
    fp8_bytes = sum(out[n].numel() + out[n + "_scale_inv"].numel() * 4 for n in quantized)
    bf16_bytes = sum(out[n].numel() * 2 for n in quantized)
    ratio = fp8_bytes / bf16_bytes
    print(f"\n{kind}: {len(quantized)} FP8 weights, {fp8_bytes} bytes vs {bf16_bytes} in bf16 -> {ratio:.4f}")
    assert ratio <= 0.55


def test_transformers_loads_the_dense_fp8_checkpoint(converted):
    if importlib.util.find_spec("accelerate") is None:
        pytest.fail("transformers' FP8 loader needs `accelerate` (pip install accelerate); requested as a dev dependency")
    model, _, dst = converted["dense"]
    loaded = Qwen3VLForConditionalGeneration.from_pretrained(dst).eval()  # CPU: dequantizes to bf16 on load
    want = fake_quant_state(model)
    got = loaded.state_dict()
    assert set(got) == set(want)
    for name, t in want.items():
        assert got[name].dtype == torch.bfloat16 and torch.equal(got[name], t), name
    ids = torch.tensor([[151644, 872, 198, 72, 101, 108, 108, 111, 151645]])
    with torch.no_grad():  # the FP8 model stays close to the original float32 one
        orig = model(input_ids=ids).logits
        err = (loaded(input_ids=ids).logits.float() - orig).norm() / orig.norm()
    print(f"\nrelative logits error vs the float32 model: {err.item():.4f}")
    assert err.item() < 0.1


@pytest.mark.parametrize("kind", ["moe", "dense_partial"])
def test_dequantized_output_loads_into_transformers(converted, kind, tmp_path):
    # per-expert FP8 experts and partial blocks are beyond transformers' FP8 loader: dequantize ourselves
    model, _, dst = converted[kind]
    cfg = json.loads((dst / "config.json").read_text())
    cfg.pop("quantization_config")
    tensors = dequantize_state(read_tensors(dst))
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    cls = type(model)
    loaded = cls.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    want = fake_quant_state(model)
    got = loaded.state_dict()
    assert set(got) == set(want)
    for name, t in want.items():
        assert torch.equal(got[name], t), name
    ids = torch.tensor([[151644, 872, 198, 72, 101, 108, 108, 111, 151645]])
    with torch.no_grad():
        orig = model(input_ids=ids).logits.float()
        err = (loaded(input_ids=ids).logits.float() - orig).norm() / orig.norm()
    print(f"\nrelative logits error vs the float32 model: {err.item():.4f}")
    assert err.item() < 0.1


def run_cli(args, capsys) -> tuple[int, str]:
    rc = cli_main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err[-1] if err else ""


def test_user_errors_are_one_line(converted, tmp_path, capsys):
    _, src, dst = converted["dense"]
    rc, msg = run_cli(["quantize", str(tmp_path / "nope"), str(tmp_path / "out"), "--fp8"], capsys)
    assert rc == 1 and msg.startswith("error: ") and "no such checkpoint folder" in msg
    rc, msg = run_cli(["quantize", str(dst), str(tmp_path / "out"), "--fp8"], capsys)
    assert rc == 1 and "already quantized" in msg and "'fp8'" in msg
    rc, msg = run_cli(["quantize", str(src), str(tmp_path / "out")], capsys)
    assert rc == 1 and "--fp8" in msg
    rc, msg = run_cli(["quantize", str(src), str(dst), "--fp8"], capsys)
    assert rc == 1 and "already exists" in msg
    rc, msg = run_cli(["quantize", str(src), str(tmp_path / "out"), "--fp8", "--max-shard-size", "lots"], capsys)
    assert rc == 1 and "--max-shard-size 'lots'" in msg
    assert not (tmp_path / "out").exists()


def test_unknown_dtype_is_refused_and_leaves_nothing_behind(converted, tmp_path, capsys):
    _, src, _ = converted["dense"]
    bad = tmp_path / "bad_src"
    bad.mkdir()
    (bad / "config.json").write_text((src / "config.json").read_text())
    tensors = read_tensors(src)
    tensors["model.language_model.layers.0.self_attn.q_proj.weight"] = torch.zeros(128, 128, dtype=torch.int32)
    save_file(tensors, str(bad / "model.safetensors"))
    rc, msg = run_cli(["quantize", str(bad), str(tmp_path / "out"), "--fp8"], capsys)
    assert rc == 1 and "q_proj.weight has dtype I32" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_src"]
