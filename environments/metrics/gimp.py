"""Image metrics (OSWorld `metrics/gimp.py`): structure similarity (SSIM/MSE), brightness, saturation,
contrast, sizes, palettes, gimprc settings.

Images that do not open score 0 where OSWorld raises (a missing export, a truncated file).
"""

from __future__ import annotations

import os

import numpy as np


def _open(path: str):
    from PIL import Image

    return Image.open(path)


def _images(*paths: str | None) -> list | None:
    """The opened images, or None when one is missing or does not open."""
    if any(p is None for p in paths):
        return None
    try:
        return [_open(p) for p in paths]
    except (OSError, ValueError, TypeError):
        return None


def structure_same_by_ssim(img1, img2, threshold: float = 0.9) -> bool:
    """SSIM of the RGB images ≥ threshold (7×7 window or the largest odd one that fits); different sizes
    or images under 7 px are not the same."""
    from skimage.metrics import structural_similarity

    if img1.width < 7 or img1.height < 7 or img2.width < 7 or img2.height < 7:
        return False
    img1 = img1 if img1.mode == "RGB" else img1.convert("RGB")
    img2 = img2 if img2.mode == "RGB" else img2.convert("RGB")
    if img1.size != img2.size:
        return False
    a1, a2 = np.array(img1), np.array(img2)
    if a1.shape != a2.shape:
        return False
    min_dim = min(a1.shape[0], a1.shape[1])
    win = 7 if min_dim >= 7 else (min_dim if min_dim % 2 == 1 else min_dim - 1)
    try:
        return structural_similarity(a1, a2, win_size=win, channel_axis=2) >= threshold
    except Exception:
        return False


def structure_same_by_mse(img1, img2, threshold: float = 0.03) -> bool:
    """Mean squared error of the RGB images (in [0, 1]) below threshold; the first is resized to the second."""
    from PIL import Image

    if not hasattr(img1, "size") or not hasattr(img2, "size"):
        img1 = Image.fromarray(img1) if hasattr(img1, "shape") else img1
        img2 = Image.fromarray(img2) if hasattr(img2, "shape") else img2
    if img1.size != img2.size:
        img1 = img1.resize(img2.size, Image.Resampling.LANCZOS)
    img1 = img1 if img1.mode == "RGB" else img1.convert("RGB")
    img2 = img2 if img2.mode == "RGB" else img2.convert("RGB")
    mse = np.mean((np.array(img1, dtype=np.float32) / 255 - np.array(img2, dtype=np.float32) / 255) ** 2)
    return bool(mse < threshold)


def _brightness(image) -> float:
    from PIL import ImageStat

    return ImageStat.Stat(image.convert("L")).mean[0]


def _normalize_brightness(image, target: float):
    factor = target / _brightness(image)
    return image.point(lambda x: min(255, max(0, int(x * factor))))


def compare_image_list(pred: str | list | None, gold: str | list | None) -> float:
    """Every pair of images identical pixel for pixel (the prediction resized and converted to the gold's size and mode)."""
    from PIL import Image, ImageChops

    if type(pred) is not list:
        pred, gold = [pred], [gold]
    for p, g in zip(pred, gold):
        if not p or not g:
            return 0.0
        try:
            pred_img = _open(p)
        except (OSError, ValueError):  # OSWorld: raises
            return 0.0
        gold_img = _open(g)
        if pred_img.size != gold_img.size:
            pred_img = pred_img.resize(gold_img.size, Image.Resampling.LANCZOS)
        if pred_img.mode != gold_img.mode:
            pred_img = pred_img.convert(gold_img.mode)
        if ImageChops.difference(pred_img, gold_img).getbbox():
            return 0.0
    return 1.0


def check_file_exists(directory: str | None, filename: str | None) -> float:
    if directory is None or filename is None:  # OSWorld: raises
        return 0.0
    return float(os.path.isfile(os.path.join(directory, filename)))


def check_brightness_decrease_and_structure_sim(src: str | None, tgt: str | None, threshold: float = 0.03) -> float:
    """The result (src) is darker than the original (tgt), and the same picture once both are brought to
    the same brightness (MSE)."""
    images = _images(src, tgt)
    if images is None:
        return 0.0
    img_src, img_tgt = images
    darker = _brightness(img_tgt) > _brightness(img_src)
    same = structure_same_by_mse(_normalize_brightness(img_src, 128), _normalize_brightness(img_tgt, 128),
                                 threshold=threshold)
    return float(darker and same)


def check_saturation_increase_and_structure_sim(src: str | None, tgt: str | None) -> float:
    """The result is more saturated than the original, with hue and value channels similar (SSIM)."""
    images = _images(src, tgt)
    if images is None:
        return 0.0
    hsv_src, hsv_tgt = images[0].convert("HSV"), images[1].convert("HSV")
    more = np.mean(np.array(hsv_tgt.split()[1])) < np.mean(np.array(hsv_src.split()[1]))
    h1, _, v1 = hsv_src.split()
    h2, _, v2 = hsv_tgt.split()
    same = structure_same_by_ssim(h1, h2) and structure_same_by_ssim(v1, v2)
    return float(more and same)


def check_file_exists_and_structure_sim(src: str | None, tgt: str | None) -> float:
    if src is None or tgt is None or not os.path.isfile(src):
        return 0.0
    images = _images(src, tgt)
    if images is None:
        return 0.0
    return float(structure_same_by_ssim(*images))


def check_triangle_position(tgt: str | None) -> float:
    """The second most common colour's pixels have their centroid within 5% of the image centre."""
    images = _images(tgt)
    if images is None:
        return 0.0
    pixels = np.array(images[0])
    colors, counts = np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0, return_counts=True)
    triangle = colors[np.argsort(counts)][1]
    centroid = np.argwhere(np.all(pixels == triangle, axis=2)).mean(axis=0)
    center = np.array(pixels.shape[:2]) / 2
    return float(bool(np.all(np.abs(centroid - center) < 0.05 * np.array(pixels.shape[:2]))))


def check_structure_sim(src: str | None, tgt: str | None) -> float:
    """Same size and similar structure (SSIM ≥ 0.9)."""
    if src is None or tgt is None:
        return 0.0
    try:
        img_src, img_tgt = _open(src), _open(tgt)
        if img_src.size != img_tgt.size:
            return 0.0
        return float(structure_same_by_ssim(img_src, img_tgt))
    except Exception:
        return 0.0


def check_structure_sim_resized(src: str | None, tgt: str | None) -> float:
    """The result, cropped to its opaque part if it has transparency and resized to the original's
    size, is similar to it (SSIM)."""
    images = _images(src, tgt)
    if images is None:
        return 0.0
    img_src, img_tgt = images
    if img_src.mode in ("RGBA", "LA") or "transparency" in img_src.info:
        if img_src.mode != "RGBA":
            img_src = img_src.convert("RGBA")
        bbox = img_src.split()[-1].getbbox()
        if bbox is None:
            return 0.0
        resized = img_src.crop(bbox).convert("RGB").resize(img_tgt.size)
    else:
        resized = img_src.resize(img_tgt.size)
    if img_tgt.mode != "RGB":
        img_tgt = img_tgt.convert("RGB")
    return float(structure_same_by_ssim(resized, img_tgt))


def check_contrast_increase_and_structure_sim(src: str | None, tgt: str | None) -> float:
    """The result has more contrast (pixel standard deviation) than the original and SSIM ≥ 0.65."""
    images = _images(src, tgt)
    if images is None:
        return 0.0
    img_src, img_tgt = images
    higher = np.std(np.asarray(img_tgt, dtype=np.float32)) < np.std(np.asarray(img_src, dtype=np.float32))
    return float(higher and structure_same_by_ssim(img_src, img_tgt, threshold=0.65))


def check_config_status(actual_config: str | None, rule: dict) -> float:
    """A non-comment gimprc line `(key … value)` whose first token (two tokens for a key list) is the
    key and whose last token is the value. A file that cannot be read scores 0 (OSWorld: raises)."""
    if actual_config is None:
        return 0.0
    try:
        with open(actual_config, encoding="utf-8") as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError):
        return 0.0
    key = rule["key"]
    for line in lines:
        if line.startswith("#") or line == "\n":
            continue
        items = line.strip().lstrip("(").rstrip(")\n").split()
        if not items:  # a blank line of spaces: OSWorld raises IndexError
            return 0.0
        if isinstance(key, str):
            if items[0] == key and items[-1] == rule["value"]:
                return 1.0
        elif isinstance(key, list) and len(key) == 2 and items[0] == key[0]:
            if len(items) < 2:  # OSWorld: IndexError
                return 0.0
            if items[1] == key[1] and items[-1] == rule["value"]:
                return 1.0
    return 0.0


def check_image_size(src: str | None, rule: dict) -> float:
    """Width/height (those given) equal; with `ignore_transparent` (or any image with a transparency
    key, as OSWorld's condition reads) the opaque part's size."""
    images = _images(src)
    if images is None:
        return 0.0
    img = images[0]
    if rule.get("ignore_transparent", False) and img.mode in ("RGBA", "LA") or "transparency" in img.info:
        if img.mode != "RGBA":
            img = img.convert("RGBA")
        bbox = img.split()[-1].getbbox()
        width, height = (0, 0) if bbox is None else (bbox[2] - bbox[0], bbox[3] - bbox[1])
    else:
        width, height = img.size
    ok_h = rule.get("height", None) is None or height == rule["height"]
    ok_w = rule.get("width", None) is None or width == rule["width"]
    return float(ok_h and ok_w)


def _load_fully(path: str | None):
    """The image fully decoded, or None (missing, empty, truncated: OSWorld retries then gives up)."""
    if not path or not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    try:
        img = _open(path)
        img.load()
        return img
    except Exception:
        return None


def check_palette_and_structure_sim(src: str | None, tgt: str | None) -> float:
    """The result is a palette image (mode P) and, as RGB, similar to the original (SSIM)."""
    if src is None or tgt is None:
        return 0.0
    source = _load_fully(src)
    if source is None:
        return 0.0
    target = _load_fully(tgt)
    if target is None:
        return 0.0
    try:
        return float(source.mode == "P" and structure_same_by_ssim(source.convert("RGB"), target))
    except Exception:
        return 0.0


def check_textbox_on_leftside(src: str | None) -> float:
    """The leftmost dark pixel (grey < 128) of any row lies in the left 5% of the image."""
    images = _images(src)
    if images is None:
        return 0.0
    gray = np.array(images[0].convert("L"))
    width = images[0].size[0]
    dark_cols = np.nonzero(gray < 128)[1]
    left = dark_cols.min() if dark_cols.size else width
    return float(left < width * 0.05)


def check_image_mirror(src: str | None, tgt: str | None) -> float:
    """The original flipped left-right is the result (SSIM ≥ 0.99)."""
    from PIL import Image

    images = _images(src, tgt)
    if images is None:
        return 0.0
    return float(structure_same_by_ssim(images[0].transpose(Image.FLIP_LEFT_RIGHT), images[1], 0.99))


def check_green_background(src: str | None, tgt: str | None) -> float:
    """Wherever the mask (tgt) is not black, the result's pixel is green-dominant.

    OSWorld indexes both pixel arrays [x, y] (column, row) over the mask's width × height: kept, so
    non-square images raise (IndexError) as there."""
    images = _images(src, tgt)
    if images is None:
        return 0.0
    source, target = np.array(images[0]), np.array(images[1])
    for x in range(images[1].width):
        for y in range(images[1].height):
            if tuple(target[x, y][:3]) != (0, 0, 0):
                r, g, b = source[x, y][:3]
                if not (g > r and g > b):
                    return 0.0
    return 1.0


def check_image_file_size(src: str | None, rule: dict) -> float:
    if src is None or not os.path.exists(src):
        return 0.0
    return float(os.path.getsize(src) < rule["max_size"])


METRICS = {f.__name__: f for f in (
    compare_image_list, check_file_exists, check_brightness_decrease_and_structure_sim,
    check_saturation_increase_and_structure_sim, check_file_exists_and_structure_sim, check_triangle_position,
    check_structure_sim, check_structure_sim_resized, check_contrast_increase_and_structure_sim, check_config_status,
    check_image_size, check_palette_and_structure_sim, check_textbox_on_leftside, check_image_mirror,
    check_green_background, check_image_file_size)}
