"""model/preprocess.py against transformers' Qwen3VLProcessor (image path) and the §2.2 formulas (video path).

The reference processor is `tiny_tokenizer.build_processor()`: Qwen2VLImageProcessorPil + the offline tokenizer
with the real special-token ids. Image tensors and token ids must be exactly equal. transformers' video processor
needs torchvision (not installable here), so videos are checked against a transcription of the spec formulas.
"""

from __future__ import annotations

import base64
import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_tokenizer
from model.preprocess import (
    Preprocessor,
    frame_timestamps,
    load_image,
    preprocess_images,
    preprocess_video,
    sample_frame_indices,
    smart_resize,
    smart_resize_video,
)

IMAGE_PAD_ID, VIDEO_PAD_ID, VISION_START_ID, VISION_END_ID = 151655, 151656, 151652, 151653
IM_START_ID, IM_END_ID, ENDOFTEXT_ID = 151644, 151645, 151643
IMAGE_KEYS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")
HUB_MIN, HUB_MAX = 65536, 16777216


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    tiny_tokenizer.save_processor(path)  # min_pixels 4096, max_pixels 65536
    return path


@pytest.fixture(scope="module")
def pre(checkpoint) -> Preprocessor:
    return Preprocessor.from_pretrained(checkpoint)


@pytest.fixture(scope="module")
def reference():
    return tiny_tokenizer.build_processor()


def rand_image(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    shape = (h, w) if channels == 1 else (h, w, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def with_budget(pre: Preprocessor, **kwargs) -> Preprocessor:
    """A copy of `pre` with other pixel budgets (exercises the constructor kwargs)."""
    return Preprocessor(pre.tokenizer, pre.chat_template, pre.image_config, pre.video_config,
                        eos_token_ids=pre.eos_token_ids, pad_token_id=pre.pad_token_id, **kwargs)


def user(*items) -> list[dict]:
    return [{"role": "user", "content": list(items)}]


def template_form(messages: list[dict]) -> list[dict]:
    """The same conversation with media items reduced to bare {"type": ...} for transformers' processor."""
    out = []
    for m in messages:
        if isinstance(m.get("content"), list):
            m = {**m, "content": [c if c.get("type") == "text" else {"type": "image"} for c in m["content"]]}
        out.append(m)
    return out


def tf_inputs(reference, messages, images, **kwargs):
    prompt = reference.apply_chat_template(template_form(messages), add_generation_prompt=True, tokenize=False)
    return reference(text=[prompt], images=images, return_tensors="pt", **kwargs)


def assert_equal_inputs(ours: dict, ref, keys=IMAGE_KEYS):
    assert set(ours) == set(keys), f"unexpected keys {sorted(ours)}"
    for key in keys:
        assert ours[key].dtype == ref[key].dtype, key
        assert ours[key].shape == ref[key].shape, (key, ours[key].shape, ref[key].shape)
        assert torch.equal(ours[key], ref[key]), f"{key}: max|d| = {(ours[key].double() - ref[key].double()).abs().max()}"


# ------------------------------------------------------------------------------------------------ sizes


@pytest.mark.parametrize("hw, resized, tokens", [
    ((1080, 1920), (1088, 1920), 2040),
    ((448, 448), (448, 448), 196),
    ((100, 100), (256, 256), 64),
    ((10000, 10000), (4096, 4096), 16384),
    ((70, 100), (224, 320), 70),
])
def test_smart_resize_worked_values(hw, resized, tokens):
    assert smart_resize(*hw, factor=32, min_pixels=HUB_MIN, max_pixels=HUB_MAX) == resized
    assert (resized[0] // 16) * (resized[1] // 16) // 4 == tokens


def test_smart_resize_uses_bankers_rounding_and_rejects_extreme_aspect():
    # 720/32 = 22.5 rounds to 22 (banker's), not 23
    assert smart_resize(720, 1280, min_pixels=HUB_MIN, max_pixels=HUB_MAX) == (704, 1280)
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2010)


# ------------------------------------------------------------------------------------------------ images vs transformers


def test_one_image_equals_transformers(pre, reference):
    image = Image.fromarray(rand_image(70, 100))
    msgs = user({"type": "image", "image": image}, {"type": "text", "text": "Describe."})
    ours = pre(msgs)
    assert_equal_inputs(ours, tf_inputs(reference, msgs, [image]))
    assert ours["image_grid_thw"].tolist() == [[1, 4, 6]]
    ids = ours["input_ids"][0].tolist()
    assert ids.count(IMAGE_PAD_ID) == 4 * 6 // 4
    assert ids[:7] == [IM_START_ID, *pre.tokenizer("user\n", add_special_tokens=False)["input_ids"], VISION_START_ID]


def test_two_images_of_different_sizes_in_a_multi_turn_chat(pre, reference):
    a, b = Image.fromarray(rand_image(300, 120, 1)), Image.fromarray(rand_image(64, 257, 2))
    msgs = [
        {"role": "system", "content": "You are a GUI agent."},
        {"role": "user", "content": [{"type": "image", "image": a}, {"type": "text", "text": "First."}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "Second:"}, {"type": "image", "image": b}]},
    ]
    ours = pre(msgs)
    assert_equal_inputs(ours, tf_inputs(reference, msgs, [a, b]))
    grids = ours["image_grid_thw"].tolist()
    assert grids[0] != grids[1]
    # rows are [image a rows; image b rows]
    assert ours["pixel_values"].shape[0] == sum(t * h * w for t, h, w in grids)


@pytest.mark.parametrize("min_pixels, max_pixels", [(4096, 16384), (4 * 65536, 16777216), (1024, 4096)])
def test_pixel_budget_attributes_equal_transformers(pre, reference, min_pixels, max_pixels):
    image = Image.fromarray(rand_image(150, 220, 3))
    budgeted = with_budget(pre, min_pixels=min_pixels)
    budgeted.max_pixels = max_pixels  # attribute form
    assert (budgeted.min_pixels, budgeted.max_pixels) == (min_pixels, max_pixels)
    msgs = user({"type": "image", "image": image})
    ours = budgeted(msgs)
    ref = tf_inputs(reference, msgs, [image], size={"shortest_edge": min_pixels, "longest_edge": max_pixels})
    assert_equal_inputs(ours, ref)
    default_grid = pre(msgs)["image_grid_thw"]
    assert not torch.equal(ours["image_grid_thw"], default_grid), "budget had no effect"


def test_per_item_pixel_budget(pre, reference):
    image = Image.fromarray(rand_image(150, 220, 4))
    msgs = user({"type": "image", "image": image, "min_pixels": 4096, "max_pixels": 8192})
    ours = pre(msgs)
    assert_equal_inputs(ours, tf_inputs(reference, msgs, [image], size={"shortest_edge": 4096, "longest_edge": 8192}))
    assert ours["image_grid_thw"].tolist() == [[1, 4, 6]]


def test_hub_budget_full_hd_screenshot(pre, reference):
    image = Image.fromarray(rand_image(1080, 1920, 5))
    msgs = user({"type": "image", "image": image})
    ours = with_budget(pre, min_pixels=HUB_MIN, max_pixels=HUB_MAX)(msgs)
    assert_equal_inputs(ours, tf_inputs(reference, msgs, [image], size={"shortest_edge": HUB_MIN, "longest_edge": HUB_MAX}))
    assert ours["image_grid_thw"].tolist() == [[1, 68, 120]]
    assert (ours["input_ids"] == IMAGE_PAD_ID).sum().item() == 2040


def _rgba():
    rgba = rand_image(90, 130, 6, channels=4)
    rgba[:30, :, 3] = 0      # fully transparent band -> white after compositing
    rgba[30:60, :, 3] = 255  # opaque band keeps its colour
    return rgba


@pytest.mark.parametrize("kind", ["pil_rgba", "numpy_rgba", "pil_gray", "numpy_gray", "numpy_rgb", "pil_palette"])
def test_image_modes_equal_transformers(pre, reference, kind):
    rgba = _rgba()
    ours_input, ref_input = {
        "pil_rgba": (Image.fromarray(rgba), Image.fromarray(rgba)),
        "numpy_rgba": (rgba, rgba),
        "pil_gray": (Image.fromarray(rgba[..., 0]), Image.fromarray(rgba[..., 0])),
        # transformers cannot take a 2-D array; it gets the same pixels as a PIL "L" image
        "numpy_gray": (rgba[..., 0], Image.fromarray(rgba[..., 0])),
        "numpy_rgb": (rgba[..., :3], rgba[..., :3]),
        "pil_palette": (Image.fromarray(rgba[..., :3]).convert("P"), Image.fromarray(rgba[..., :3]).convert("P")),
    }[kind]
    msgs = user({"type": "image", "image": ours_input}, {"type": "text", "text": "What is this?"})
    assert_equal_inputs(pre(msgs), tf_inputs(reference, msgs, [ref_input]))


def test_rgba_is_composited_on_white():
    rgb = np.asarray(load_image(_rgba()))
    assert (rgb[:30] == 255).all()
    assert (rgb[30:60] == _rgba()[30:60, :, :3]).all()


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("source", ["str_path", "pathlib", "file_url", "bytes", "data_url", "image_url_item", "url_key"])
def test_image_sources_equal_transformers(pre, reference, tmp_path, source):
    array = rand_image(77, 140, 7)
    png = _png_bytes(array)
    path = tmp_path / "screen.png"
    path.write_bytes(png)
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    item = {
        "str_path": {"type": "image", "image": str(path)},
        "pathlib": {"type": "image", "image": path},
        "file_url": {"type": "image", "image": f"file://{path}"},
        "bytes": {"type": "image", "image": png},
        "data_url": {"type": "image", "image": data_url},
        "image_url_item": {"type": "image_url", "image_url": {"url": data_url}},
        "url_key": {"type": "image", "url": str(path)},
    }[source]
    msgs = user(item, {"type": "text", "text": "Click OK."})
    assert_equal_inputs(pre(msgs), tf_inputs(reference, msgs, [Image.fromarray(array)]))


def test_preprocess_images_function_matches_processor(pre):
    images = [rand_image(70, 100, 8), rand_image(40, 300, 9)]
    pv, grid = preprocess_images(images, image_mean=[0.5] * 3, image_std=[0.5] * 3, min_pixels=4096, max_pixels=65536)
    ours = pre(user({"type": "image", "image": images[0]}, {"type": "image", "image": images[1]}))
    assert torch.equal(pv, ours["pixel_values"]) and torch.equal(grid, ours["image_grid_thw"])
    assert pv.dtype == torch.float32 and grid.dtype == torch.int64 and pv.shape[1] == 3 * 2 * 16 * 16


# ------------------------------------------------------------------------------------------------ chat template


def test_tools_and_tool_messages_render_as_the_template(pre, reference):
    tools = [{"type": "function", "function": {"name": "computer_use", "description": "Use the mouse.",
                                               "parameters": {"type": "object", "properties": {}}}}]
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Open the menu."},
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": "computer_use", "arguments": {"action": "left_click"}}}]},
        {"role": "tool", "content": "clicked"},
    ]
    text, vision = pre.render(msgs, tools=tools)
    expected = reference.tokenizer.apply_chat_template(msgs, tools=tools, add_generation_prompt=True, tokenize=False)
    assert text == expected and vision == {}
    assert "# Tools" in text and '"name": "computer_use"' in text
    ours = pre(msgs, tools=tools)
    ref = reference(text=[expected], return_tensors="pt")
    assert_equal_inputs(ours, ref, keys=("input_ids", "attention_mask"))
    no_prompt = pre(msgs, add_generation_prompt=False, tools=tools)["input_ids"][0].tolist()
    with_prompt = ours["input_ids"][0].tolist()
    assert with_prompt[:len(no_prompt)] == no_prompt
    assert with_prompt[len(no_prompt):] == [IM_START_ID, *pre.tokenizer("assistant\n", add_special_tokens=False)["input_ids"]]


# ------------------------------------------------------------------------------------------------ video


def reference_video(frames: list[np.ndarray], fps: float, min_pixels: int, max_pixels: int):
    """Direct transcription of spec §2.2 (sample_frames, video smart_resize, fused normalize, patchify)."""
    total = len(frames)
    n = int(total / fps * 2.0)
    n = min(max(n, 4), 768, total)
    indices = np.linspace(0, total - 1, n).round().astype(int)
    h, w = frames[0].shape[:2]
    if h < 32 or w < 32:
        scale = max(32 / h, 32 / w)
        h, w = int(h * scale), int(w * scale)
    t_bar = round(n / 2) * 2
    hb, wb = round(h / 32) * 32, round(w / 32) * 32
    if t_bar * hb * wb > max_pixels:
        beta = np.sqrt(n * h * w / max_pixels)
        hb, wb = max(32, int(np.floor(h / beta / 32)) * 32), max(32, int(np.floor(w / beta / 32)) * 32)
    elif t_bar * hb * wb < min_pixels:
        beta = np.sqrt(min_pixels / (n * h * w))
        hb, wb = int(np.ceil(h * beta / 32)) * 32, int(np.ceil(w * beta / 32)) * 32
    resized = [np.asarray(Image.fromarray(frames[i]).resize((wb, hb), Image.BICUBIC)) for i in indices]
    videos = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2)[None].float()  # [B=1, T, C, H, W]
    mean, std = torch.tensor([0.5] * 3) * (1.0 / (1 / 255)), torch.tensor([0.5] * 3) * (1.0 / (1 / 255))
    videos = (videos - mean[:, None, None]) / std[:, None, None]
    if pad := -n % 2:
        videos = torch.cat([videos, videos[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
    B, T, C, H, W = videos.shape
    gt, gh, gw, m, p = T // 2, H // 16, W // 16, 2, 16
    x = videos.view(B, gt, 2, C, gh // m, m, p, gw // m, m, p).permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
    pixel_values_videos = x.reshape(B * gt * gh * gw, C * 2 * p * p)
    idx = list(indices) + [indices[-1]] * (-n % 2)
    ts = [i / fps for i in idx]
    stamps = [(ts[j] + ts[j + 1]) / 2 for j in range(0, len(ts), 2)]
    return pixel_values_videos, [gt, gh, gw], stamps


def test_video_worked_example_720p():
    frames = [np.full((720, 1280, 3), 10 * i, dtype=np.uint8) for i in range(20)]
    pv, grid, stamps = preprocess_video(frames, fps=2.0, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    assert grid.tolist() == [[10, 44, 80]] and grid.dtype == torch.int64
    assert pv.shape == (10 * 44 * 80, 1536)
    assert 44 * 80 // 4 == 880
    assert stamps == pytest.approx([0.25 + k for k in range(10)])
    # constant frames: every row of temporal patch k holds frames 2k and 2k+1 -> values (20k-127.5)/127.5, (20k+10-127.5)/127.5
    rows = pv.view(10, 44 * 80, 3, 2, 256)
    for k in (0, 9):
        assert torch.allclose(rows[k, :, :, 0], torch.tensor((20 * k - 127.5) / 127.5))
        assert torch.allclose(rows[k, :, :, 1], torch.tensor((20 * k + 10 - 127.5) / 127.5))


@pytest.mark.parametrize("n_frames, fps, size, budget, expected_grid", [
    (90, 30.0, (96, 160), (4096, 25165824), [3, 6, 10]),     # subsampled to 6 frames
    (5, 2.0, (70, 100), (4096, 25165824), [3, 4, 6]),        # odd count: the last frame is repeated
    (12, 4.0, (200, 300), (4096, 6 * 64 * 96), [3, 4, 6]),   # total-pixel budget shrinks 200x300 to 64x96
    (3, 1.0, (20, 40), (4096, 25165824), [2, 2, 4]),         # frames under 32 px are sized up first (32x64)
])
def test_video_equals_spec_transcription(n_frames, fps, size, budget, expected_grid):
    frames = [rand_image(*size, seed=s) for s in range(n_frames)]
    pv, grid, stamps = preprocess_video(frames, fps, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                        min_pixels=budget[0], max_pixels=budget[1])
    ref_pv, ref_grid, ref_stamps = reference_video(frames, fps, *budget)
    assert grid.tolist() == [ref_grid] == [expected_grid]
    assert torch.equal(pv, ref_pv)
    assert stamps == pytest.approx(ref_stamps, abs=1e-12)


def test_video_sampling_and_timestamps():
    assert sample_frame_indices(90, fps=30.0) == [0, 18, 36, 53, 71, 89]
    assert frame_timestamps([0, 18, 36, 53, 71, 89], fps=30.0) == pytest.approx([0.3, (36 + 53) / 60, (71 + 89) / 60])
    assert sample_frame_indices(10, fps=2.0) == list(range(10))
    assert sample_frame_indices(3, fps=30.0) == [0, 1, 2]  # fewer than min_frames: all of them
    assert len(sample_frame_indices(10_000, fps=1.0)) == 768
    assert smart_resize_video(20, 720, 1280) == (704, 1280)


def test_two_frame_video_of_one_image_equals_the_image():
    # no resize happens (64x96 fits both budgets), so the only difference is the fused normalize: <= 1 ulp
    image = rand_image(64, 96, 11)
    pv_img, grid_img = preprocess_images([image], image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                         min_pixels=4096, max_pixels=65536)
    pv_vid, grid_vid, _ = preprocess_video([image, image], fps=2.0, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    assert torch.equal(grid_img, grid_vid)
    assert (pv_img - pv_vid).abs().max().item() <= 1e-6


def test_video_prompt_follows_vllm_convention(pre):
    frames = [rand_image(96, 160, s) for s in range(90)]
    msgs = user({"type": "video", "video": frames, "fps": 30.0}, {"type": "text", "text": "What happens?"})
    text, vision = pre.render(msgs)
    pads = "<|video_pad|>" * (6 * 10 // 4)  # 96x160 -> grid 6x10
    # one "<t seconds>" + vision_start + pads + vision_end per temporal patch; the template's own
    # vision_start/vision_end pair is replaced, not kept around it (transformers 5.24 would nest them)
    expected = ("<|im_start|>user\n"
                + "".join(f"<{t} seconds><|vision_start|>{pads}<|vision_end|>" for t in ("0.3", "1.5", "2.7"))
                + "What happens?<|im_end|>\n<|im_start|>assistant\n")
    assert text == expected
    assert vision["video_grid_thw"].tolist() == [[3, 6, 10]]
    inputs = pre(msgs)
    ids = inputs["input_ids"][0]
    assert torch.equal(ids, torch.tensor(pre.tokenizer(expected, add_special_tokens=False)["input_ids"]))
    assert (ids == VIDEO_PAD_ID).sum().item() == 3 * 15
    assert (ids == VISION_START_ID).sum().item() == 3 and (ids == VISION_END_ID).sum().item() == 3
    assert set(inputs) == {"input_ids", "attention_mask", "pixel_values_videos", "video_grid_thw"}
    ref_pv, _, _ = reference_video(frames, 30.0, pre.video_config.min_pixels, pre.video_config.max_pixels)
    assert torch.equal(inputs["pixel_values_videos"], ref_pv)


def test_image_and_video_in_one_prompt(pre, reference):
    image = Image.fromarray(rand_image(70, 100, 12))
    frames = [rand_image(64, 64, s) for s in range(4)]
    msgs = user({"type": "video", "video": frames, "fps": 2.0}, {"type": "image", "image": image},
                {"type": "text", "text": "Compare."})
    inputs = pre(msgs)
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 6]] and inputs["video_grid_thw"].tolist() == [[2, 4, 4]]
    ids = inputs["input_ids"][0].tolist()
    assert ids.index(VIDEO_PAD_ID) < ids.index(IMAGE_PAD_ID)
    ref = tf_inputs(reference, user({"type": "image", "image": image}), [image])
    assert torch.equal(inputs["pixel_values"], ref["pixel_values"])


def test_video_per_item_budget_is_per_frame(pre):
    frames = [rand_image(200, 300, s) for s in range(4)]
    small = pre(user({"type": "video", "video": frames, "fps": 2.0, "max_pixels": 64 * 96}))
    assert small["video_grid_thw"].tolist() == [[2, 4, 6]]  # 200x300 under 6144 px per frame -> 64x96
    large = pre(user({"type": "video", "video": frames, "fps": 2.0}))
    assert large["video_grid_thw"].tolist() == [[2, 12, 18]]  # 200x300 -> 192x288
    total = pre(user({"type": "video", "video": frames, "fps": "2", "total_pixels": 4 * 64 * 96}))
    assert total["video_grid_thw"].tolist() == [[2, 4, 6]]  # the whole clip's budget


@pytest.mark.parametrize("item, match", [
    ({"type": "video", "video": [], "fps": 2.0}, "no frames"),
    ({"type": "video", "video": [rand_image(64, 64)] * 2, "fps": 0}, "fps must be a positive number, got 0"),
    ({"type": "video", "video": [rand_image(64, 64)] * 2, "fps": "fast"}, "fps must be a positive number"),
    ({"type": "video", "video": [rand_image(64, 64), rand_image(64, 96)], "fps": 2.0}, "one size"),
    ({"type": "video", "video": "clip.mp4"}, "list"),
    ({"type": "video", "video": [b"not an image", b"x"], "fps": 2.0}, "cannot read image"),
])
def test_bad_video_gives_clear_error(pre, item, match):
    with pytest.raises(ValueError, match=match):
        pre(user(item))


# ------------------------------------------------------------------------------------------------ batch / decode


def test_batch_is_left_padded(pre):
    a, b = rand_image(70, 100, 13), rand_image(150, 220, 14)
    short = user({"type": "image", "image": a}, {"type": "text", "text": "Hi"})
    long = [{"role": "system", "content": "Describe every detail of the screen."},
            {"role": "user", "content": [{"type": "image", "image": b}, {"type": "text", "text": "What is shown?"}]}]
    one_short, one_long = pre(short), pre(long)
    batch = pre.batch([short, long])
    n_short, n_long = one_short["input_ids"].shape[1], one_long["input_ids"].shape[1]
    assert n_short < n_long and batch["input_ids"].shape == (2, n_long)
    pad = n_long - n_short
    assert (batch["input_ids"][0, :pad] == pre.pad_token_id).all()
    assert batch["attention_mask"][0].tolist() == [0] * pad + [1] * n_short
    assert torch.equal(batch["input_ids"][0, pad:], one_short["input_ids"][0])
    assert torch.equal(batch["input_ids"][1], one_long["input_ids"][0]) and batch["attention_mask"][1].all()
    assert torch.equal(batch["pixel_values"], torch.cat([one_short["pixel_values"], one_long["pixel_values"]]))
    assert torch.equal(batch["image_grid_thw"], torch.cat([one_short["image_grid_thw"], one_long["image_grid_thw"]]))


def test_batch_matches_transformers_left_padding(pre, reference):
    a, b = Image.fromarray(rand_image(70, 100, 15)), Image.fromarray(rand_image(150, 220, 16))
    convs = [user({"type": "image", "image": a}, {"type": "text", "text": "Hi"}),
             user({"type": "image", "image": b}, {"type": "text", "text": "A much longer question here?"})]
    prompts = [reference.apply_chat_template(template_form(c), add_generation_prompt=True, tokenize=False) for c in convs]
    reference.tokenizer.padding_side = "left"
    try:
        ref = reference(text=prompts, images=[a, b], padding=True, return_tensors="pt")
    finally:
        reference.tokenizer.padding_side = "right"
    assert_equal_inputs(pre.batch(convs), ref)


def test_decode(pre):
    ids = pre.tokenizer("Click the OK button.", add_special_tokens=False)["input_ids"] + [IM_END_ID]
    assert pre.decode(ids) == "Click the OK button."
    assert pre.decode(torch.tensor([ids])) == "Click the OK button."
    assert pre.decode(torch.tensor(ids), skip_special_tokens=False) == "Click the OK button.<|im_end|>"
    tool = pre.tokenizer('<tool_call>\n{"name": "x"}\n</tool_call>', add_special_tokens=False)["input_ids"]
    assert pre.decode(tool) == '<tool_call>\n{"name": "x"}\n</tool_call>'  # not special: survives skipping
    with pytest.raises(ValueError, match="one sequence"):
        pre.decode(torch.tensor([ids, ids]))


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("image, reason", [
    (b"\x89PNG\r\n\x1a\n garbage", "cannot read image <"),
    (b"not an image at all", "not an image format Pillow can read"),
    ("/no/such/screen.png", "no such file"),
    ("data:image/png;base64,@@@notbase64", "cannot read image data:"),
    ("data:image/png,rawdata", "base64"),
    ("https://example.com/a.png", "remote URLs"),
    (np.zeros((10, 10, 3), dtype=np.float32), "uint8"),
    (np.zeros((3, 10, 10, 2), dtype=np.uint8), "shape"),
    (12345, "unsupported type int"),
])
def test_bad_image_gives_clear_value_error(image, reason):
    with pytest.raises(ValueError, match="cannot read image") as err:
        load_image(image)
    assert reason in str(err.value)
    assert "\n" not in str(err.value) and " object at 0x" not in str(err.value)   # no Python reprs


def test_truncated_file_gives_value_error(tmp_path, pre):
    path = tmp_path / "cut.png"
    path.write_bytes(_png_bytes(rand_image(64, 64))[:200])
    with pytest.raises(ValueError, match=f"cannot read image {path}"):
        pre(user({"type": "image", "image": str(path)}))


@pytest.mark.parametrize("messages, match", [
    ([], "non-empty list"),
    ([{"content": "hi"}], "role"),
    ([{"role": "user", "content": [{"type": "audio", "audio": "x.wav"}]}], "unsupported content item type 'audio'"),
    ([{"role": "user", "content": [{"type": "image"}]}], "image item has no"),
    ([{"role": "user", "content": "<|image_pad|> here"}], "placeholders"),
    ([{"role": "user", "content": [{"type": "image", "image": rand_image(64, 64), "max_pixels": "lots"}]}],
     "max_pixels must be a positive integer"),
])
def test_bad_messages_give_clear_errors(pre, messages, match):
    with pytest.raises(ValueError, match=match):
        pre(messages)


def test_chat_template_exception_becomes_value_error(pre):
    strict = Preprocessor(pre.tokenizer, "{% if messages[-1].role != 'user' %}{{ raise_exception('No user query "
                          "found in messages.') }}{% endif %}{{ messages[-1].content }}", pre.image_config,
                          pre.video_config, eos_token_ids=pre.eos_token_ids, pad_token_id=pre.pad_token_id)
    assert strict.render([{"role": "user", "content": "hi"}])[0] == "hi"
    with pytest.raises(ValueError, match="chat template rejected the messages: No user query found"):
        strict([{"role": "assistant", "content": "hi"}])


# ------------------------------------------------------------------------------------------------ loading a checkpoint


def test_from_pretrained_hub_layout(checkpoint, pre):
    cfg = pre.image_config
    assert (cfg.patch_size, cfg.temporal_patch_size, cfg.merge_size) == (16, 2, 2)
    assert (cfg.min_pixels, cfg.max_pixels) == (4096, 65536)
    assert cfg.image_mean == (0.5, 0.5, 0.5) and cfg.image_std == (0.5, 0.5, 0.5)
    # no video config in the folder: image values + the Hub video budget
    assert (pre.video_config.min_pixels, pre.video_config.max_pixels) == (4096, 25165824)
    assert pre.video_config.fps == 2.0 and pre.video_config.patch_size == 16
    assert pre.eos_token_ids == [IM_END_ID] and pre.pad_token_id == ENDOFTEXT_ID
    assert pre.chat_template == (checkpoint / "chat_template.jinja").read_text()


def test_from_pretrained_optional_files(checkpoint, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoint, folder)
    # image config only inside processor_config.json, with other values than the default json
    (folder / "preprocessor_config.json").unlink()
    proc_cfg = json.loads((folder / "processor_config.json").read_text())
    proc_cfg["image_processor"]["size"] = {"shortest_edge": 1024, "longest_edge": 8192}
    proc_cfg["image_processor"]["image_mean"] = [0.48145466, 0.4578275, 0.40821073]
    (folder / "processor_config.json").write_text(json.dumps(proc_cfg))
    (folder / "video_preprocessor_config.json").write_text(json.dumps(
        {"size": {"shortest_edge": 2048, "longest_edge": 131072}, "patch_size": 16, "temporal_patch_size": 2,
         "merge_size": 2, "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "fps": 1.0, "max_frames": 64}))
    (folder / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": ENDOFTEXT_ID, "pad_token_id": ENDOFTEXT_ID, "eos_token_id": [IM_END_ID, ENDOFTEXT_ID]}))
    template = (folder / "chat_template.jinja").read_text()
    (folder / "chat_template.jinja").unlink()
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": "LEGACY " + template}))

    pre = Preprocessor.from_pretrained(folder, max_pixels=16384)
    assert (pre.min_pixels, pre.max_pixels) == (1024, 16384)  # kwarg wins over the file
    assert pre.image_config.image_mean == (0.48145466, 0.4578275, 0.40821073)
    assert (pre.video_config.min_pixels, pre.video_config.max_pixels) == (2048, 131072)
    assert (pre.video_config.fps, pre.video_config.max_frames) == (1.0, 64)
    assert pre.eos_token_ids == [IM_END_ID, ENDOFTEXT_ID]
    text, _ = pre.render([{"role": "user", "content": "hi"}])
    assert text.startswith("LEGACY <|im_start|>user\nhi")


def test_from_pretrained_missing_folder_or_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint folder not found"):
        Preprocessor.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        Preprocessor.from_pretrained(tmp_path)
