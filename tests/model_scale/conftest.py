"""Tiny checkpoints for the end-to-end MoE / FP8 / tensor-parallel tests, built once per session with transformers.

* `moe_layouts`: one float32 MoE model saved three ways: save_pretrained's fused [E, 2I, H] / [E, H, I], the Hub's
  fused [E, H, 2I] / [E, I, H], and per-expert tensors. Text init std 0.1 (not tiny_checkpoints' 0.5): the MoE
  residual stream then stays small enough for a 1e-4 float32 logit tolerance, and greedy tokens still vary.
* `fp8_models`: bf16 dense and MoE checkpoints with the real models' FP8 geometry (hidden 128, head_dim 128,
  2 query heads, 1 kv head, intermediate 256: every TP=2 shard is a whole number of 128-blocks, and the single kv
  head is replicated), their `qvl-agent quantize --fp8` outputs, and a dequantized bf16 copy of each for
  transformers (which cannot load per-expert FP8 experts itself).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import tiny_checkpoints
from agent.cli import main as cli_main
from model.quantize import dequantize_state

FP8_TEXT = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, head_dim=128,
                rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
                                 "mrope_interleaved": True})
FP8_MOE = dict(moe_intermediate_size=256, num_experts=4, num_experts_per_tok=2)
FP8_VISION = dict(out_hidden_size=128, depth=2)
MOE_PARITY_TEXT = dict(initializer_range=0.1)


def copy_folder_with(src: Path, dst: Path, tensors: dict[str, torch.Tensor], config: dict | None = None) -> Path:
    """dst = src's non-weight files + `tensors` in one model.safetensors (+ an optional new config.json)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name != "model.safetensors.index.json":
            shutil.copy(f, dst / f.name)
    if config is not None:
        (dst / "config.json").write_text(json.dumps(config, indent=2))
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def hub_layout(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: t.transpose(1, 2).contiguous() if n.endswith(("experts.gate_up_proj", "experts.down_proj")) else t
            for n, t in tensors.items()}


def per_expert_layout(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for n, t in tensors.items():
        if n.endswith("experts.gate_up_proj"):           # [E, 2I, H]
            prefix, i = n.removesuffix("gate_up_proj"), t.shape[1] // 2
            for e in range(t.shape[0]):
                out[f"{prefix}{e}.gate_proj.weight"] = t[e, :i].clone()
                out[f"{prefix}{e}.up_proj.weight"] = t[e, i:].clone()
        elif n.endswith("experts.down_proj"):            # [E, H, I]
            prefix = n.removesuffix("down_proj")
            for e in range(t.shape[0]):
                out[f"{prefix}{e}.down_proj.weight"] = t[e].clone()
        else:
            out[n] = t
    return out


def dequantized_copy(fp8: Path, dst: Path) -> Path:
    """The FP8 checkpoint with every FP8 weight dequantized to bf16, experts fused as transformers saves them."""
    out = dequantize_state(tiny_checkpoints.read_tensors(fp8))
    config = json.loads((fp8 / "config.json").read_text())
    config.pop("quantization_config")
    return copy_folder_with(fp8, dst, out, config)


@pytest.fixture(scope="session")
def moe_layouts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("moe_layouts")
    src = tiny_checkpoints.save_checkpoint(root / "transformers", tied=False, moe=True, text=MOE_PARITY_TEXT)
    tensors = tiny_checkpoints.read_tensors(src)
    return {"transformers": src,
            "hub_fused": copy_folder_with(src, root / "hub_fused", hub_layout(tensors)),
            "per_expert": copy_folder_with(src, root / "per_expert", per_expert_layout(tensors))}


def _bf16_checkpoint(path: Path, moe: bool, **text) -> Path:
    text = dict(FP8_TEXT, **(FP8_MOE if moe else {}), **text)
    model = tiny_checkpoints.build_model(tied=False, moe=moe, seed=3, text=text, vision=FP8_VISION)
    model.to(torch.bfloat16).save_pretrained(str(path))
    (path / "generation_config.json").write_text(json.dumps(tiny_checkpoints.GENERATION_CONFIG))
    tiny_checkpoints.save_processor(path)
    return path


@pytest.fixture(scope="session")
def fp8_models(tmp_path_factory) -> dict[str, Path]:
    """{dense, moe}: bf16 sources; {dense, moe}_fp8: quantized; {dense, moe}_deq: dequantized bf16 copies."""
    root = tmp_path_factory.mktemp("fp8_models")
    out = {}
    for kind in ("dense", "moe"):
        src = out[kind] = _bf16_checkpoint(root / kind, moe=kind == "moe")
        fp8 = out[f"{kind}_fp8"] = root / f"{kind}_fp8"
        assert cli_main(["quantize", str(src), str(fp8), "--fp8", "--max-shard-size", "4MB"]) == 0
        out[f"{kind}_deq"] = dequantized_copy(fp8, root / f"{kind}_deq")
    return out


@pytest.fixture(scope="session")
def fp8_unsplittable(tmp_path_factory) -> Path:
    """FP8 dense checkpoint with intermediate_size 384: 192 rows per rank at TP=2 cut a 128-row block (as
    30B-A3B's experts I=768 at TP=4, spec §8.1)."""
    root = tmp_path_factory.mktemp("fp8_unsplittable")
    src = _bf16_checkpoint(root / "src", moe=False, intermediate_size=384, num_hidden_layers=1)
    assert cli_main(["quantize", str(src), str(root / "fp8"), "--fp8"]) == 0
    return root / "fp8"
