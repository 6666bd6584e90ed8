"""The model's relative grid ↔ screenshot pixels, and what a screenshot costs in visual tokens.

Qwen3-VL answers on a 0..1000 grid normalised to the *original* image (the processor's resize does not
change the mapping). The cookbook divides by 1000, OSWorld by 999: ``divisor`` is a knob. Executors then
map screenshot pixels to their input space with `tools.base.ScreenGeometry` (HiDPI scale, monitor offset).
"""

from __future__ import annotations

import math

# Qwen3-VL: patch 16 x spatial merge 2. HF processor defaults (preprocessor_config.json size).
FACTOR = 32
MIN_PIXELS = 65536
MAX_PIXELS = 16777216


def to_pixels(coordinate: tuple[float, float], image_size: tuple[int, int], divisor: float = 1000) -> tuple[float, float]:
    """Grid point → pixel of a ``width x height`` screenshot, clamped inside it ([0, W-1] x [0, H-1])."""
    if divisor <= 0:
        raise ValueError(f"coordinate divisor must be positive, got {divisor}")
    width, height = image_size
    x = coordinate[0] / divisor * width
    y = coordinate[1] / divisor * height
    return (min(max(x, 0.0), width - 1.0), min(max(y, 0.0), height - 1.0))


def to_grid(pixel: tuple[float, float], image_size: tuple[int, int], divisor: float = 1000) -> tuple[float, float]:
    """Pixel → grid point (the inverse of `to_pixels` inside the image), rounded to the grid's integers."""
    width, height = image_size
    gx = round(pixel[0] / width * divisor)
    gy = round(pixel[1] / height * divisor)
    return (float(min(max(gx, 0), divisor)), float(min(max(gy, 0), divisor)))


def smart_resize(height: int, width: int, factor: int = FACTOR, min_pixels: int = MIN_PIXELS,
                 max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Qwen2-VL/Qwen3-VL processor resize: sides multiples of ``factor``, area within [min, max]."""
    if max(height, width) / max(min(height, width), 1) > 200:
        raise ValueError(f"aspect ratio of {width}x{height} exceeds 200")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def visual_tokens(image_size: tuple[int, int], max_pixels: int = MAX_PIXELS, min_pixels: int = MIN_PIXELS) -> int:
    """Tokens the screenshot occupies in the prompt: (W/32)·(H/32) after smart_resize."""
    width, height = image_size
    h, w = smart_resize(height, width, FACTOR, min_pixels, max_pixels)
    return (h // FACTOR) * (w // FACTOR)
