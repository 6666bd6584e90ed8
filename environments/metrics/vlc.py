"""VLC metrics (OSWorld `metrics/vlc.py`): playing state, vlcrc settings, window size, image similarity.

vlcrc values are read as OSWorld does: the last line containing `key=` wins (commented-out lines too,
for the qt-* keys), else VLC's default.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from environments.metrics.rules import Unsupported


def _vlcrc(path: str | None) -> str | None:
    """The file's text (bytes decoded as UTF-8, as OSWorld); None when it cannot be read (OSWorld: raises)."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def is_vlc_playing(status_path: str | None, rule: dict) -> float:
    """VLC's HTTP status.xml says `playing`, and the first meta field present names the expected file
    (basename, suffix or `/name` ending) or URL (contained, same file name, or same host and path part)."""
    from xml.etree import ElementTree

    text = _vlcrc(status_path)
    if text is None:
        return 0.0
    try:
        tree = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return 0.0
    if tree.find("state").text != "playing":
        return 0.0

    def first(names: list[str]) -> str | None:
        for path in names:
            element = tree.find(path)
            if element is not None and element.text:
                return element.text
        return None

    meta = 'information/category[@name="meta"]/info[@name="{}"]'
    if rule["type"] == "file_name":
        info = first([meta.format(n) for n in ("filename", "title", "uri", "location", "name")])
        if not info:
            return 0.0
        want = rule["file_name"]
        if os.path.basename(info) == want or info.endswith(want):
            return 1.0
        return float(want in info and (info.endswith("/" + want) or info.endswith("\\" + want)))
    if rule["type"] == "url":
        stream = 'information/category[@name="Stream 0"]/info[@name="{}"]'
        info = first([meta.format(n) for n in ("url", "URI", "location", "title", "filename")]
                     + [stream.format(n) for n in ("Codec", "Type", "Language")])
        if not info:
            return 0.0
        want = rule["url"]
        if want in info or info.endswith(want):
            return 1.0
        try:
            parsed = urlparse(want)
            if info == os.path.basename(parsed.path):
                return 1.0
            if "://" in info:
                actual = urlparse(info)
                if parsed.netloc == actual.netloc and parsed.path in actual.path:
                    return 1.0
        except Exception:
            pass
        return 0.0
    return 0.0


def is_vlc_recordings_folder(vlcrc: str | None, rule: dict) -> float:
    """The first non-comment line with `input-record-path` has the expected path after its last `=`."""
    text = _vlcrc(vlcrc)
    if text is None:
        return 0.0
    for line in text.split("\n"):
        if line.startswith("#") or not line.strip():
            continue
        if "input-record-path" in line:
            return float(line.split("=")[-1].strip() == rule["recording_file_path"])
    return 0.0


def is_vlc_fullscreen(window_size: dict | None, screen_size: dict | None) -> float:
    if screen_size is None or window_size is None:
        return 0.0
    return float(window_size["width"] == screen_size["width"] and window_size["height"] == screen_size["height"])


def compare_images(image1: str | None, image2: str | None, **options: Any) -> float:
    """SSIM of the grey images, both resized (Lanczos) to the smaller size (Python's tuple order, so by
    width first); with `reference_base_result` b: (ssim - b) / (1 - b) when ssim ≥ b + 0.01, else 0.
    An image that does not open scores 0 (OSWorld: raises)."""
    import numpy as np
    from PIL import Image
    from skimage.metrics import structural_similarity

    if not image1 or not image2:
        return 0.0
    base = options.get("reference_base_result", None)
    try:
        a = Image.open(image1).convert("L")
    except (OSError, ValueError):
        return 0.0
    b = Image.open(image2).convert("L")
    size = min(a.size, b.size)
    a, b = a.resize(size, Image.Resampling.LANCZOS), b.resize(size, Image.Resampling.LANCZOS)
    similarity = structural_similarity(np.array(a), np.array(b))
    if base is None:
        return float(similarity)
    return float((similarity - base) / (1 - base)) if similarity >= base + 0.01 else 0.0


def _last_setting(text: str, needle: str, default: str) -> str:
    value = default
    for line in text.split("\n"):
        if needle in line:
            value = line.split("=")[-1].strip()
    return value


def _setting_metric(needle: str, default: str, expected_key: str):
    def metric(vlcrc: str | None, rule: dict) -> float:
        text = _vlcrc(vlcrc)
        if text is None:
            return 0.0
        want = rule[expected_key]
        want = str(want) if isinstance(want, int) else want
        return float(_last_setting(text, needle, default) == want)

    return metric


check_qt_bgcone = _setting_metric("qt-bgcone=", "1", "expected_qt_bgcone")
check_qt_max_volume = _setting_metric("qt-max-volume=", "125", "expected_qt_max_volume")
check_qt_minimal_view = _setting_metric("qt-minimal-view=", "0", "expected_qt_minimal_view")
check_one_instance_when_started_from_file = _setting_metric(
    "one-instance-when-started-from-file=", "1", "expected_one_instance_when_started_from_file")


def check_qt_slider_colours(vlcrc: str | None, rule: dict) -> float:
    """`match`: qt-slider-colours equals the expected string; `blackish`: every colour's components < 100."""
    text = _vlcrc(vlcrc)
    if text is None:
        return 0.0
    try:
        colours = _last_setting(text, "qt-slider-colours", "153;210;153;20;210;20;255;199;15;245;39;29")
        if rule["type"] == "match":
            return float(colours == rule["expected_qt_slider_colours"])
        if rule["type"] == "blackish":
            values = [int(x) for x in colours.split(";")]
            return float(all(v < 100 for rgb in zip(values[0::3], values[1::3], values[2::3]) for v in rgb))
    except Exception:
        return 0.0
    raise Unsupported(f"check_qt_slider_colours type {rule['type']!r}")


def check_global_key_play_pause(vlcrc: str | None, rule: dict) -> float:
    """"1" when the last `global-key-play-pause=` line sets a key, "0" when it is empty or absent."""
    text = _vlcrc(vlcrc)
    if text is None:
        return 0.0
    want = rule["expected_global_key_play_pause"]
    want = str(want) if isinstance(want, int) else want
    value = "0"
    for line in text.split("\n"):
        if "global-key-play-pause=" in line:
            value = "0" if line.split("=")[-1].strip() == "" else "1"
    return float(value == want)


for _f, _name in ((check_qt_bgcone, "check_qt_bgcone"), (check_qt_max_volume, "check_qt_max_volume"),
                  (check_qt_minimal_view, "check_qt_minimal_view"),
                  (check_one_instance_when_started_from_file, "check_one_instance_when_started_from_file")):
    _f.__name__ = _f.__qualname__ = _name

METRICS = {f.__name__: f for f in (
    is_vlc_playing, is_vlc_recordings_folder, is_vlc_fullscreen, compare_images,
    check_qt_bgcone, check_qt_max_volume, check_qt_minimal_view, check_one_instance_when_started_from_file,
    check_qt_slider_colours, check_global_key_play_pause)}
