"""MoE checkpoints end to end: every on-disk expert layout loads into Qwen3VL and matches transformers
(float32 logits max|Δ| <= 1e-4 and 32 greedy tokens identical, text and image prompts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Qwen3VLMoeForConditionalGeneration

from model import Qwen3VL
from model.cpu import PackedExperts
from model.moe import Experts, SparseMoeBlock
from tiny_tokenizer import build_processor

LAYOUTS = ["transformers", "hub_fused", "per_expert"]
NEW_TOKENS = 32


def prompt(case: str) -> dict:
    proc = build_processor()
    images = [Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 100, 3), dtype=np.uint8))]
    text = "Write a short poem about the sea." if case == "text" else "Describe the picture."
    content = ([{"type": "image"}] if case == "image" else []) + [{"type": "text", "text": text}]
    chat = proc.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    inputs = dict(proc(text=[chat], images=images if case == "image" else None, return_tensors="pt"))
    inputs["mm_token_type_ids"] = (inputs["input_ids"] == 151655).long()   # transformers wants it with images
    return inputs


@pytest.fixture(scope="module")
def reference(moe_layouts):
    """transformers' logits and greedy tokens for each prompt (the same model underlies every layout)."""
    ref = Qwen3VLMoeForConditionalGeneration.from_pretrained(moe_layouts["transformers"], dtype=torch.float32).eval()
    out = {}
    with torch.no_grad():
        for case in ("text", "image"):
            inputs = prompt(case)
            logits = ref(**inputs).logits.float()
            tokens = ref.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)[:, inputs["input_ids"].shape[1]:]
            out[case] = (inputs, logits, tokens)
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
def test_moe_layout_matches_transformers(layout, moe_layouts, reference, record_property):
    ours = Qwen3VL.from_pretrained(moe_layouts[layout], dtype=torch.float32)
    blocks = [m for m in ours.modules() if isinstance(m, SparseMoeBlock)]
    assert len(blocks) == ours.config.text.num_hidden_layers and all(isinstance(b.experts, (Experts, PackedExperts)) for b in blocks)
    for case, (inputs, want_logits, want_tokens) in reference.items():
        delta = (ours.logits(**inputs) - want_logits).abs().max().item()
        record_property(f"moe_{layout}_{case}_max_abs_logit_delta", delta)
        print(f"\n[moe {layout}/{case}] fp32 logits max|Δ| = {delta:.2e} (|logits| max {want_logits.abs().max():.1f})")
        assert delta <= 1e-4
        tokens = ours.generate(**inputs, max_new_tokens=NEW_TOKENS)
        assert tokens.shape == want_tokens.shape == (1, NEW_TOKENS)
        assert torch.equal(tokens, want_tokens)
        assert len(set(tokens[0].tolist())) > NEW_TOKENS // 4  # a real sequence, not one token repeated


def test_decoder_sparse_step_and_mlp_only_layers(tmp_path):
    """Layers that are dense by config (mlp_only_layers, decoder_sparse_step) load dense MLP weights."""
    import tiny_checkpoints

    path = tiny_checkpoints.save_checkpoint(tmp_path / "mixed", tied=False, moe=True,
                                            text=dict(num_hidden_layers=4, decoder_sparse_step=2, mlp_only_layers=[3],
                                                      initializer_range=0.1))
    ours = Qwen3VL.from_pretrained(path, dtype=torch.float32)
    kinds = [layer.is_moe for layer in ours.language_model.layers]
    assert kinds == [False, True, False, False]   # (i+1) % 2 == 0 -> 1, 3; 3 is mlp-only
    ref = Qwen3VLMoeForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    inputs = prompt("text")
    with torch.no_grad():
        want = ref(**inputs).logits
    assert (ours.logits(**inputs) - want).abs().max().item() <= 1e-4
