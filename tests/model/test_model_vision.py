"""Vision encoder and 3-D positions against transformers, piece by piece (parity ladder steps 2-3)."""

from __future__ import annotations

import pytest
import torch

import tiny_checkpoints

from model import Qwen3VL
from model.rope import rope_index
from model.vision import Segments

IMAGE_ID, VIDEO_ID, START, END = 151655, 151656, 151652, 151653


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import AutoModelForImageTextToText

    path = tiny_checkpoints.checkpoint("dense_tied", tmp_path_factory)
    return (Qwen3VL.from_pretrained(path, dtype=torch.float32),
            AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval())


def test_segment_attention_never_crosses_images():
    torch.manual_seed(0)
    grid = torch.tensor([[1, 4, 6], [2, 2, 4], [1, 6, 4]])     # an image, a 2-frame video, another image
    lengths = [24, 8, 8, 24]                                    # each video frame is its own segment
    q, k, v = (torch.randn(sum(lengths), 2, 8) for _ in range(3))
    got = Segments(grid, torch.device("cpu"), torch.float32).attention(q, k, v)
    expected, start = [], 0
    for n in lengths:
        sl = slice(start, start + n)
        a = torch.softmax(torch.einsum("qhd,khd->hqk", q[sl], k[sl]) / 8 ** 0.5, -1)
        expected.append(torch.einsum("hqk,khd->qhd", a, v[sl]))
        start += n
    assert torch.allclose(got, torch.cat(expected), atol=1e-6)
    uniform = Segments(torch.tensor([[3, 2, 4]]), torch.device("cpu"), torch.float32)
    assert uniform.uniform and uniform.mask is None
    out = uniform.attention(q[:24], k[:24], v[:24])
    a = torch.softmax(torch.einsum("qhd,khd->hqk", q[:8], k[:8]) / 8 ** 0.5, -1)
    assert torch.allclose(out[:8], torch.einsum("hqk,khd->qhd", a, v[:8]), atol=1e-6)


def test_vision_encoder_matches_transformers_on_mixed_images_and_video(models):
    ours, ref = models
    grid = torch.tensor([[1, 4, 6], [2, 4, 4], [1, 8, 2]])
    pixels = torch.randn(int(grid.prod(-1).sum()), 1536, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref.model.visual(pixels, grid_thw=grid)
        main, deepstack = ours.visual(pixels, grid)
    assert main.shape == (int(grid.prod(-1).sum()) // 4, 64)
    assert (main - expected.pooler_output).abs().max() < 1e-5
    assert len(deepstack) == len(expected.deepstack_features) == 2
    for a, b in zip(deepstack, expected.deepstack_features):
        assert (a - b).abs().max() < 1e-5


def test_rope_index_matches_transformers_on_a_padded_batch(models):
    _, ref = models
    ts = [60, 47, 32, 49, 50, 47, 32, 49]  # "<0 1 seconds>"-like text tokens between video frames
    row0 = [1, 2, START] + [IMAGE_ID] * 6 + [END, 3, 4, 5] + ts[:3] + [START] + [VIDEO_ID] * 2 + [END] \
        + ts[3:] + [START] + [VIDEO_ID] * 2 + [END, 6]
    row1 = [7, 8, START] + [IMAGE_ID] * 4 + [END, 9]
    L = max(len(row0), len(row1))
    ids = torch.zeros(2, L, dtype=torch.long)
    mask = torch.zeros(2, L, dtype=torch.long)
    for b, row in enumerate((row0, row1)):
        ids[b, L - len(row):] = torch.tensor(row)
        mask[b, L - len(row):] = 1
    image_grid = torch.tensor([[1, 4, 6], [1, 4, 4]])
    video_grid = torch.tensor([[2, 2, 4]])
    types = (ids == IMAGE_ID).long() + 2 * (ids == VIDEO_ID).long()
    want_pos, want_delta = ref.model.get_rope_index(ids, types, image_grid, video_grid.clone(), mask)
    pos, delta = rope_index(ids, mask, image_grid, video_grid, IMAGE_ID, VIDEO_ID, 2)
    assert torch.equal(pos, want_pos)
    assert torch.equal(delta, want_delta.view(-1))
    assert pos[:, 1, : L - len(row1)].abs().sum() == 0       # padding stays at 0


def test_bad_grids_are_clear_errors(models):
    ours, _ = models
    pixels = torch.zeros(24, 1536)
    with pytest.raises(ValueError, match="multiples of 2"):
        ours.visual(pixels, torch.tensor([[1, 3, 8]]))
    with pytest.raises(ValueError, match="pixel rows \\(24\\) do not match grid_thw \\(32 patches\\)"):
        ours.visual(pixels, torch.tensor([[1, 4, 8]]))
