"""Capture, PNG encoding and the action marker drawn on screenshots."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tools.screenshots import draw_marker, encode_png, grab, monitors, open_mss


def test_draw_marker_marks_the_point_and_leaves_the_input_alone():
    image = Image.new("RGB", (400, 300), (255, 255, 255))
    marked = draw_marker(image, (100, 200), label="left_click")
    assert image.getpixel((100, 200 - 12)) == (255, 255, 255)  # a copy; the original is untouched
    diff = np.any(np.asarray(marked) != 255, axis=-1)
    ys, xs = np.nonzero(diff)
    # the ring and crosshair are centred on the point (the label sits up and to the right)
    ring = diff[160:241, 60:141]
    assert ring.sum() > 100
    assert diff[200, 60:100].any() and diff[200, 101:140].any() and diff[160:200, 100].any()
    assert xs.min() >= 100 - 2 * 10 - 4 and ys.max() <= 200 + 2 * 10 + 4
    # the label: white text on a black box, up and to the right of the point
    assert np.asarray(marked)[170:200, 115:200].min() == 0


def test_label_stays_inside_the_image_at_the_corner():
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    marked = draw_marker(image, (199, 0), label="a long label that does not fit")
    assert marked.size == image.size
    assert np.any(np.asarray(marked)[:, :50] == 0)  # pushed left to stay visible


def test_encode_png_roundtrip():
    rgb = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    png = encode_png(Image.fromarray(rgb))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), rgb)


@pytest.mark.display
def test_grab_returns_the_monitor_as_rgb(x_display):
    sct = open_mss(x_display)
    try:
        mons = monitors(sct)
        assert mons[1] == {"left": 0, "top": 0, "width": 1280, "height": 800}
        image = grab(sct, {"left": 100, "top": 50, "width": 64, "height": 32})
        assert image.mode == "RGB" and image.size == (64, 32)
    finally:
        sct.close()


def test_open_mss_on_a_missing_display_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot capture the screen of display :4243"):
        open_mss(":4243")
