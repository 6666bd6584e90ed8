"""Parity of the embedded runtime with transformers on tiny random checkpoints.

fp32: logits max|Δ| <= 1e-4 and 32 greedy tokens identical, for text, one image, two images of different
sizes, a video (vLLM placeholder layout, built by hand) and a left-padded batch of two prompts, on tied,
untied and sharded checkpoints (and the MoE checkpoint). bf16: our logits are as close to fp32 as
transformers' bf16 logits are, and our bf16 greedy tokens equal transformers' bf16 greedy tokens.
Measured numbers are printed (`pytest -s`) and recorded as junit properties.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_checkpoints
from tiny_checkpoints import FP32_LOGIT_TOL
from tiny_tokenizer import build_processor

from model import Qwen3VL

NEW_TOKENS = 32
IMAGE_ID, VIDEO_ID = 151655, 151656

_MODELS: dict[tuple[str, str, torch.dtype], object] = {}


def load(kind: str, impl: str, dtype: torch.dtype, tmp_path_factory):
    """Cached models: impl 'ours' (Qwen3VL) or 'hf' (transformers) of a tiny checkpoint kind."""
    key = (kind, impl, dtype)
    if key not in _MODELS:
        path = tiny_checkpoints.checkpoint(kind, tmp_path_factory)
        if impl == "ours":
            _MODELS[key] = Qwen3VL.from_pretrained(path, dtype=dtype, device="cpu")
        else:
            from transformers import AutoModelForImageTextToText

            _MODELS[key] = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).eval()
    return _MODELS[key]


def image(seed: int, h: int, w: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def mm_token_types(input_ids: torch.Tensor) -> torch.Tensor:
    return (input_ids == IMAGE_ID).long() + 2 * (input_ids == VIDEO_ID).long()


def image_inputs(n_images: int, text: str = "Describe the picture.") -> dict:
    proc = build_processor()
    images = [image(0, 70, 100), image(1, 130, 60)][:n_images]
    msgs = [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]
    prompt = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    return dict(proc(text=[prompt], images=images or None, return_tensors="pt"))


def video_inputs() -> dict:
    """A 4-frame clip: grid (2, 4, 6) -> two temporal patches of 2x3 tokens, each `<t seconds>` + its own
    vision_start/pads/vision_end group (vLLM / transformers 4.57 layout, qwen3vl-runtime.md §2.2)."""
    tok = build_processor().tokenizer
    grid = torch.tensor([[2, 4, 6]])
    per_frame = 4 * 6 // 4
    frames = "".join(f"<{t:.1f} seconds><|vision_start|>" + "<|video_pad|>" * per_frame + "<|vision_end|>"
                     for t in (0.2, 1.2))
    text = f"<|im_start|>user\n{frames}What happens in the video?<|im_end|>\n<|im_start|>assistant\n"
    input_ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    assert int((input_ids == VIDEO_ID).sum()) == 2 * per_frame
    pixels = torch.from_numpy(np.random.default_rng(5).uniform(-1, 1, (2 * 4 * 6, 1536)).astype(np.float32))
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "pixel_values_videos": pixels, "video_grid_thw": grid, "mm_token_type_ids": mm_token_types(input_ids)}


CASES = {
    "text": lambda: image_inputs(0, "Write a short poem about the sea."),
    "image": lambda: image_inputs(1),
    "two_images": lambda: image_inputs(2),
    "video": video_inputs,
}


def hf_generate(ref, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        out = ref.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    return out[:, inputs["input_ids"].shape[1]:]


def hf_logits(ref, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return ref(**inputs).logits.float()


def first_difference(a: torch.Tensor, b: torch.Tensor) -> int | None:
    n = min(a.shape[-1], b.shape[-1])
    diff = (a[..., :n] != b[..., :n]).reshape(-1, n).any(0).nonzero()
    return int(diff[0]) if len(diff) else (None if a.shape == b.shape else n)


@pytest.mark.parametrize("kind", ["dense_tied", "dense_untied", "dense_sharded"])
@pytest.mark.parametrize("case", list(CASES))
def test_fp32_logits_and_greedy_match_transformers(kind, case, tmp_path_factory, record_property):
    ours = load(kind, "ours", torch.float32, tmp_path_factory)
    ref = load(kind, "hf", torch.float32, tmp_path_factory)
    inputs = CASES[case]()
    expected = hf_logits(ref, inputs)
    got = ours.logits(**inputs)
    assert got.shape == expected.shape == (1, inputs["input_ids"].shape[1], 151936)
    delta = (got - expected).abs().max().item()
    record_property(f"max_abs_logit_delta_{kind}_{case}", delta)
    print(f"\n[{kind}/{case}] fp32 logits max|Δ| = {delta:.2e} (|logits| max {expected.abs().max():.1f})")
    assert delta <= FP32_LOGIT_TOL

    want = hf_generate(ref, inputs)
    new_ids = ours.generate(**inputs, max_new_tokens=NEW_TOKENS, temperature=0.0)
    assert new_ids.dtype == torch.long
    assert new_ids.shape == want.shape == (1, NEW_TOKENS)
    assert torch.equal(new_ids, want), f"first different token at {first_difference(new_ids, want)}"
    assert len(set(new_ids[0].tolist())) > NEW_TOKENS // 2  # a real sequence, not one token repeated


@pytest.mark.parametrize("kind", ["dense_tied", "dense_untied"])
def test_left_padded_batch_equals_each_prompt_alone(kind, tmp_path_factory, record_property):
    ours = load(kind, "ours", torch.float32, tmp_path_factory)
    ref = load(kind, "hf", torch.float32, tmp_path_factory)
    proc = build_processor()
    proc.tokenizer.padding_side = "left"
    convs = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the picture."}]}],
             [{"role": "user", "content": [{"type": "text", "text": "Hi!"}]}]]
    prompts = [proc.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in convs]
    img = image(0, 70, 100)
    batch = dict(proc(text=prompts, images=[img], padding=True, return_tensors="pt"))
    alone = [dict(proc(text=[prompts[0]], images=[img], return_tensors="pt")),
             dict(proc(text=[prompts[1]], return_tensors="pt"))]
    lengths = [a["input_ids"].shape[1] for a in alone]
    assert lengths[0] != lengths[1] and batch["attention_mask"][1, 0] == 0  # really left-padded

    got = ours.logits(**batch)
    L = batch["input_ids"].shape[1]
    delta = 0.0
    for row, single in enumerate(alone):
        expected = hf_logits(ref, single)[0]
        delta = max(delta, (got[row, L - lengths[row]:] - expected).abs().max().item())
    record_property(f"max_abs_logit_delta_batch_{kind}", delta)
    print(f"\n[{kind}/batch] fp32 logits max|Δ| vs each prompt alone = {delta:.2e}")
    assert delta <= FP32_LOGIT_TOL

    new_ids = ours.generate(**batch, max_new_tokens=NEW_TOKENS)
    for row, single in enumerate(alone):
        want = hf_generate(ref, single)[0]
        assert torch.equal(new_ids[row], want), f"row {row}: first different token at {first_difference(new_ids[row], want)}"
        assert torch.equal(new_ids[row], ours.generate(**single, max_new_tokens=NEW_TOKENS)[0])


@pytest.mark.parametrize("case", list(CASES))
def test_bf16_tracks_fp32_like_transformers_bf16(case, tmp_path_factory, record_property):
    """Random tiny models have no trained margins, so bf16 rounding can flip a greedy token against fp32 —
    transformers' bf16 flips at the same places (measured: text at token 7, image at 12, video at 0; two images
    never). We require: our bf16 logit error vs fp32 is within 1.5x of transformers' bf16 error, and our bf16
    greedy run agrees with fp32 at least as long as transformers' bf16 run does. (After a flip the two bf16 runs
    continue from near-ties; they matched to the last token here, but that part is machine-dependent.)"""
    kind = "dense_tied"
    ours16 = load(kind, "ours", torch.bfloat16, tmp_path_factory)
    ref16 = load(kind, "hf", torch.bfloat16, tmp_path_factory)
    ref32 = load(kind, "hf", torch.float32, tmp_path_factory)
    inputs = CASES[case]()
    inputs16 = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in inputs.items()}
    exact = hf_logits(ref32, inputs)
    ours_err = (ours16.logits(**inputs16).float() - exact).abs().max().item()
    ref_err = (hf_logits(ref16, inputs16) - exact).abs().max().item()
    fp32_ids = hf_generate(ref32, inputs)
    ours_ids = ours16.generate(**inputs16, max_new_tokens=NEW_TOKENS)
    ref_ids = hf_generate(ref16, inputs16)
    ours_agree = first_difference(ours_ids, fp32_ids)
    ref_agree = first_difference(ref_ids, fp32_ids)
    record_property(f"bf16_logit_err_{case}", ours_err)
    print(f"\n[{case}] bf16 max|Δ| vs fp32: ours {ours_err:.3f}, transformers {ref_err:.3f}; greedy tokens equal "
          f"to fp32 up to: ours {ours_agree if ours_agree is not None else 'all'}, "
          f"transformers {ref_agree if ref_agree is not None else 'all'}")
    print(f"  bf16 greedy tokens ours vs transformers: "
          f"{'identical' if torch.equal(ours_ids, ref_ids) else f'first difference at {first_difference(ours_ids, ref_ids)}'}")
    assert ours_err <= 1.5 * ref_err + 1e-3
    agree = NEW_TOKENS if ours_agree is None else ours_agree
    assert agree >= (NEW_TOKENS if ref_agree is None else ref_agree)
    assert torch.equal(ours_ids[:, :agree], fp32_ids[:, :agree])


def test_moe_checkpoint_matches_transformers(tmp_path_factory, record_property):
    """MoE layers route through model.moe.SparseMoeBlock. The random experts (std 0.5) push the residual
    stream to |h| ~ 170, so fp32 rounding alone (~1e-6 relative) is ~2e-4 absolute in the hidden states;
    the logit tolerance is scaled to that (measured: 1.6e-5 text, 2.7e-4 with images)."""
    ours = load("moe", "ours", torch.float32, tmp_path_factory)
    ref = load("moe", "hf", torch.float32, tmp_path_factory)
    assert ours.config.is_moe
    for case in ("text", "two_images"):
        inputs = CASES[case]()
        expected = hf_logits(ref, inputs)
        delta = (ours.logits(**inputs) - expected).abs().max().item()
        scale = expected.abs().max().item()
        record_property(f"max_abs_logit_delta_moe_{case}", delta)
        print(f"\n[moe/{case}] fp32 logits max|Δ| = {delta:.2e} (|logits| max {scale:.1f})")
        assert delta <= 5 * FP32_LOGIT_TOL
        want = hf_generate(ref, inputs)[:, :16]
        assert torch.equal(ours.generate(**inputs, max_new_tokens=16), want)


def test_images_change_the_logits(tmp_path_factory):
    """Guards the parity tests against a vision path that contributes nothing."""
    ours = load("dense_untied", "ours", torch.float32, tmp_path_factory)
    a = image_inputs(1)
    b = dict(a, pixel_values=a["pixel_values"].flip(0))
    assert (ours.logits(**a) - ours.logits(**b)).abs().max() > 1e-2
