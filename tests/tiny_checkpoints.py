"""Tiny random Qwen3-VL checkpoints in the Hub's file layout, built with transformers (never downloaded).

Each checkpoint folder holds config.json, generation_config.json (the Hub's eos/pad ids), safetensors
(single file or sharded), and the offline tokenizer/processor of tests/tiny_tokenizer.py. Recipe:
shared/docs/qwen3vl-runtime.md §10. Sizes keep patch 16 / merge 2 / temporal 2, the real vocab and token ids.

Text weights use a wide init (std 0.5 instead of 0.02): random models with the default init give near-tied
logits, so greedy decoding of a 0.02 model would compare rounding noise rather than the model.

Usage from tests:  `path = tiny_checkpoints.checkpoint("dense_tied", tmp_path_factory)` (built once per run).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tiny_tokenizer import save_processor

TOKEN_IDS = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
                 vision_end_token_id=151653)
# Two fp32 computations of the same logits that sum in a different order (another library's kernels, oneDNN's blocked
# GEMMs, a matmul split over tensor-parallel ranks and all-reduced) agree only to rounding: every reduction of length K
# adds a relative error of about sqrt(K)·2^-24 (~1e-6 at these widths), and the few layers, norms and the residual stream
# carry it to the logits, relative to their scale: |logit| reaches ~30-50 with the wide init, so 1e-5 of the logit
# scale (3e-4..5e-4) bounds a reordering, and 1e-4 absolute holds where, as against transformers, only the final
# reductions differ. Exact equality on one machine is luck of the kernel choice.
FP32_LOGIT_RTOL = 1e-5
FP32_LOGIT_TOL = 1e-4

GENERATION_CONFIG = {"bos_token_id": 151643, "pad_token_id": 151643, "eos_token_id": [151645, 151643]}

VISION = dict(depth=3, hidden_size=32, num_heads=2, intermediate_size=64, patch_size=16, temporal_patch_size=2,
              spatial_merge_size=2, num_position_embeddings=64, out_hidden_size=64, deepstack_visual_indexes=[0, 1],
              initializer_range=0.02)
TEXT = dict(vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, initializer_range=0.5,
            rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [3, 3, 2],
                             "mrope_interleaved": True})
# hidden 64 is neither I nor 2I, so Hub [E, H, 2I] and transformers [E, 2I, H] expert layouts are distinguishable
MOE_TEXT = dict(TEXT, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=24, decoder_sparse_step=1,
                mlp_only_layers=[], norm_topk_prob=True)

KINDS = {
    "dense_tied": dict(tied=True),
    "dense_untied": dict(tied=False),
    "dense_sharded": dict(tied=False, max_shard_size="20MB"),
    "moe": dict(tied=False, moe=True),
    "dense_qwen_bpe": dict(tied=True, tokenizer="qwen_bpe"),  # the real Qwen BPE (tests/qwen_tokenizer.py)
}


def tiny_config(tied: bool = True, moe: bool = False, text: dict | None = None, vision: dict | None = None):
    """A transformers Qwen3VLConfig / Qwen3VLMoeConfig with the tiny sizes (overrides merged in)."""
    from transformers import Qwen3VLConfig, Qwen3VLMoeConfig

    text_cfg = dict(MOE_TEXT if moe else TEXT, **(text or {}))
    vision_cfg = dict(VISION, **(vision or {}))
    cls = Qwen3VLMoeConfig if moe else Qwen3VLConfig
    return cls(vision_config=vision_cfg, text_config=text_cfg, tie_word_embeddings=tied, **TOKEN_IDS)


def tiny_moe_text_config(**overrides):
    """The tiny MoE text config as a transformers Qwen3VLMoeTextConfig (for MoE-block tests)."""
    from transformers import Qwen3VLMoeTextConfig

    return Qwen3VLMoeTextConfig(**dict(MOE_TEXT, **overrides))


def build_model(tied: bool = True, moe: bool = False, seed: int = 0, **overrides):
    """A transformers model with random weights (fp32, eval mode)."""
    from transformers import Qwen3VLForConditionalGeneration, Qwen3VLMoeForConditionalGeneration

    config = tiny_config(tied=tied, moe=moe, **overrides)
    torch.manual_seed(seed)
    cls = Qwen3VLMoeForConditionalGeneration if moe else Qwen3VLForConditionalGeneration
    model = cls(config).eval()
    return model


def save_checkpoint(path: str | Path, tied: bool = True, moe: bool = False, max_shard_size: str | None = None,
                    seed: int = 0, tokenizer: str = "bytes", **overrides) -> Path:
    """Write a complete tiny checkpoint folder (weights, configs, tokenizer, processor) and return its path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model = build_model(tied=tied, moe=moe, seed=seed, **overrides)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(path), **kwargs)
    (path / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))
    save_processor(path)
    if tokenizer == "qwen_bpe":  # same ids and chat template, real merges instead of one token per byte
        from qwen_tokenizer import save_tokenizer

        save_tokenizer(path)
    return path


_BUILT: dict[str, Path] = {}


def checkpoint(kind: str, tmp_path_factory) -> Path:
    """The checkpoint folder of one of KINDS, built once per test session under pytest's tmp dir."""
    if kind not in _BUILT:
        folder = tmp_path_factory.mktemp(f"ckpt_{kind}")
        _BUILT[kind] = save_checkpoint(folder, **KINDS[kind])
    return _BUILT[kind]


def read_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of every *.safetensors file in `folder`, by name."""
    from safetensors import safe_open

    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            out.update({n: h.get_tensor(n) for n in h.keys()})
    return out
