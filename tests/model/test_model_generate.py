"""Generation behaviour: stopping and padding, streaming, sampling controls, penalties, chat() through the
Preprocessor (images and video), and clear errors for bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_checkpoints

from model import Qwen3VL
from model.generate import SamplingParams, next_tokens

_CACHE: dict = {}


@pytest.fixture()
def model(tmp_path_factory) -> Qwen3VL:
    if "ours" not in _CACHE:
        _CACHE["ours"] = Qwen3VL.from_pretrained(tiny_checkpoints.checkpoint("dense_untied", tmp_path_factory),
                                                 dtype=torch.float32)
    return _CACHE["ours"]


@pytest.fixture()
def reference(tmp_path_factory):
    if "hf" not in _CACHE:
        from transformers import AutoModelForImageTextToText

        path = tiny_checkpoints.checkpoint("dense_untied", tmp_path_factory)
        _CACHE["hf"] = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    return _CACHE["hf"]


def picture(seed=0, h=70, w=100) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def prompt_batch(model: Qwen3VL) -> dict:
    return model.preprocessor.batch([
        [{"role": "user", "content": [{"type": "image", "image": picture()}, {"type": "text", "text": "What?"}]}],
        [{"role": "user", "content": "Tell me a story about a cat."}],
    ])


def test_stream_callback_gets_every_token_in_order(model):
    inputs = prompt_batch(model)
    seen: list[torch.Tensor] = []
    out = model.generate(**inputs, max_new_tokens=12, stream=lambda t: seen.append(t.clone()))
    assert out.shape == (2, 12)
    assert torch.equal(torch.stack(seen, dim=1), out)


def test_rows_stop_at_eos_and_are_padded(model):
    inputs = prompt_batch(model)
    free = model.generate(**inputs, max_new_tokens=16, eos_token_ids=[])
    # make row 0's 6th token the stop token (first occurrence in that row; absent from row 1's output)
    stop_at = next(i for i in range(4, 16) if free[0, i] not in free[0, :i] and free[0, i] not in free[1])
    eos = int(free[0, stop_at])
    out = model.generate(**inputs, max_new_tokens=16, eos_token_ids=[eos])
    pad = model.config.pad_token_id
    assert out.shape == (2, 16)
    assert torch.equal(out[0, :stop_at + 1], free[0, :stop_at + 1])          # eos itself is returned
    assert (out[0, stop_at + 1:] == pad).all()
    assert torch.equal(out[1], free[1])
    # when every row has stopped, generation ends early: T = steps actually taken
    single = {k: v[:1] if k in ("input_ids", "attention_mask") else v for k, v in inputs.items()}
    short = model.generate(**single, max_new_tokens=16, eos_token_ids=[eos])
    assert short.shape == (1, stop_at + 1) and int(short[0, -1]) == eos
    assert model.timings["new_tokens"] == stop_at + 1


def test_sampling_is_reproducible_with_a_seed(model):
    inputs = prompt_batch(model)
    a = model.generate(**inputs, max_new_tokens=16, temperature=1.0, seed=1)
    b = model.generate(**inputs, max_new_tokens=16, temperature=1.0, seed=1)
    c = model.generate(**inputs, max_new_tokens=16, temperature=1.0, seed=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    greedy = model.generate(**inputs, max_new_tokens=16)
    assert not torch.equal(a, greedy)
    assert torch.equal(model.generate(**inputs, max_new_tokens=16, temperature=1.0, top_k=1, seed=3), greedy)
    assert torch.equal(model.generate(**inputs, max_new_tokens=16, temperature=1.0, top_p=1e-6, seed=3), greedy)


def test_top_k_and_top_p_restrict_the_sampled_set():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().expand(4000, 4).contiguous()
    none = torch.zeros(4000, 4, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)

    def draw(**kw):
        return next_tokens(logits, SamplingParams(temperature=1.0, **kw).check(), none, none, gen)

    counts = torch.bincount(draw(top_p=0.7), minlength=4)           # 0.5 + 0.3 reach 0.7: keep two
    assert counts[2:].sum() == 0 and 0.55 < counts[0] / counts[:2].sum() < 0.70   # 0.5 / 0.8 = 0.625
    counts = torch.bincount(draw(top_k=3), minlength=4)
    assert counts[3] == 0 and counts[:3].min() > 0
    counts = torch.bincount(draw(), minlength=4).float() / 4000
    assert torch.allclose(counts, probs, atol=0.03)
    cold = torch.bincount(next_tokens(logits, SamplingParams(temperature=0.25), none, none, gen), minlength=4)
    assert cold[0] / 4000 > 0.85                                       # p^4 renormalised: 0.5^4 / Σ ≈ 0.87


def test_repetition_penalty_matches_transformers(model, reference):
    inputs = model.preprocessor([{"role": "user", "content": "a a a a a a a a a a a a"}])
    plain = model.generate(**inputs, max_new_tokens=32, eos_token_ids=[])
    assert len(set(plain[0].tolist())) < 32                            # repeats: the penalty has work to do
    want = reference.generate(**inputs, max_new_tokens=32, do_sample=False, repetition_penalty=1.8)
    got = model.generate(**inputs, max_new_tokens=32, repetition_penalty=1.8)
    assert torch.equal(got, want[:, inputs["input_ids"].shape[1]:])
    assert not torch.equal(got, plain)


def test_presence_penalty_prevents_repeats(model):
    inputs = model.preprocessor([{"role": "user", "content": "a a a a a a a a a a a a"}])
    plain = model.generate(**inputs, max_new_tokens=32, eos_token_ids=[])
    penalised = model.generate(**inputs, max_new_tokens=32, presence_penalty=1000.0, eos_token_ids=[])
    assert len(set(plain[0].tolist())) < 32                            # the plain greedy run repeats itself
    assert len(set(penalised[0].tolist())) == 32


def test_chat_answers_from_images_and_video(model, reference):
    frames = [picture(seed, 64, 96) for seed in range(4)]
    messages = [{"role": "user", "content": [
        {"type": "image", "image": picture(7)},
        {"type": "video", "video": frames, "fps": 2.0},
        {"type": "text", "text": "Compare the picture with the clip."}]}]
    answer = model.chat(messages, max_new_tokens=10)
    inputs = model.preprocessor(messages)
    assert inputs["video_grid_thw"].tolist() == [[2, 4, 6]]
    ids = model.generate(**inputs, max_new_tokens=10)
    assert answer == model.preprocessor.decode([i for i in ids[0].tolist() if i not in model.eos_token_ids])
    assert isinstance(answer, str) and len(answer) > 0
    # the same ids and tensors through transformers give the same tokens (vLLM video placeholder layout)
    ids_in = inputs["input_ids"]
    hf = dict(inputs, mm_token_type_ids=(ids_in == 151655).long() + 2 * (ids_in == 151656).long())
    want = reference.generate(**hf, max_new_tokens=10, do_sample=False)[:, ids_in.shape[1]:]
    assert torch.equal(ids, want)


def test_bad_arguments_are_clear_errors(model):
    inputs = model.preprocessor([{"role": "user", "content": [{"type": "image", "image": picture()},
                                                              {"type": "text", "text": "x"}]}])
    with pytest.raises(ValueError, match="image tokens but no image pixels"):
        model.generate(inputs["input_ids"], max_new_tokens=2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(**inputs, max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(**inputs, temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        model.generate(**inputs, temperature=1.0, top_p=0.0)
    with pytest.raises(ValueError, match="do not match"):
        model.logits(inputs["input_ids"], pixel_values=inputs["pixel_values"][:-4],
                     image_grid_thw=inputs["image_grid_thw"])
