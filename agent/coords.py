"""The model's relative grid ↔ screenshot pixels, and what a screenshot costs in visual tokens.

Qwen3-VL answers on a 0..1000 grid normalised to the *original* image (the processor's resize does not
change the mapping). The cookbook maps ``x / 1000 * W`` (a point between pixels, rounded by the executor);
OSWorld's ``qwen3vl_agent`` maps ``int(x * (W / 999))``, the pixel's floor. Each prompt profile maps the way
its reference does (`PROFILE_GRID`); ``divisor`` can be overridden. Executors then map screenshot pixels to
their input space with `tools.base.ScreenGeometry` (HiDPI scale, monitor offset).

Unlike OSWorld, points are clamped on screen: OSWorld's grid values 999 and 1000 land on x = W and W + 1
(off screen for pyautogui); here they land on W - 1, the last pixel, as everything else clamps.
"""

from __future__ import annotations

import math


FACTOR = 32  # Qwen3-VL: patch 16 x spatial merge 2

# profile -> (divisor, floor to the pixel): the cookbook's x / 1000 * W, OSWorld's int(x * (W / 999))
PROFILE_GRID: dict[str, tuple[float, bool]] = {"qwen": (1000, False), "osworld": (999, True)}


def to_pixels(coordinate: tuple[float, float], image_size: tuple[int, int], divisor: float = 1000,
              floor: bool = False) -> tuple[float, float]:
    """Grid point → pixel of a ``width x height`` screenshot, clamped inside it ([0, W-1] x [0, H-1]).

    ``floor``: OSWorld's integer pixel, computed in its operation order (``x * (W / divisor)``, then
    truncated) so the float rounding matches too; else the exact point ``x / divisor * W``."""
    if divisor <= 0:
        raise ValueError(f"coordinate divisor must be positive, got {divisor}")
    width, height = image_size
    if floor:
        x = float(math.floor(coordinate[0] * (width / divisor)))
        y = float(math.floor(coordinate[1] * (height / divisor)))
    else:
        x = coordinate[0] / divisor * width
        y = coordinate[1] / divisor * height
    return (min(max(x, 0.0), width - 1.0), min(max(y, 0.0), height - 1.0))


def to_grid(pixel: tuple[float, float], image_size: tuple[int, int], divisor: float = 1000) -> tuple[float, float]:
    """Pixel → grid point (the inverse of `to_pixels` inside the image), rounded to the grid's integers."""
    width, height = image_size
    gx = round(pixel[0] / width * divisor)
    gy = round(pixel[1] / height * divisor)
    return (float(min(max(gx, 0), divisor)), float(min(max(gy, 0), divisor)))


def visual_tokens(image_size: tuple[int, int], max_pixels: int | None = None,
                  min_pixels: int | None = None) -> int:
    """Tokens the screenshot occupies in the prompt: (W/32)·(H/32) after smart_resize (Hub budgets by default)."""
    # Imported here: the model package pulls in torch, which executors and `doctor` do not need.
    from model.preprocess import HUB_IMAGE_MAX_PIXELS, HUB_IMAGE_MIN_PIXELS, smart_resize

    max_pixels = HUB_IMAGE_MAX_PIXELS if max_pixels is None else max_pixels
    min_pixels = HUB_IMAGE_MIN_PIXELS if min_pixels is None else min_pixels
    width, height = image_size
    h, w = smart_resize(height, width, FACTOR, min_pixels, max_pixels)
    return (h // FACTOR) * (w // FACTOR)
