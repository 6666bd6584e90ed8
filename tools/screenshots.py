"""Screen capture and screenshot annotation.

Capture goes through mss (X11 on Linux, also macOS/Windows); monitors are mss's list: index 0 is the
bounding box of all monitors, 1.. are the individual monitors, each a dict with left/top/width/height
in the OS's screen coordinates (negative offsets are normal for a monitor left of/above the primary).
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageDraw, ImageFont


def open_mss(display: str | None = None, with_cursor: bool = False) -> Any:
    """An mss screen grabber (one per thread: mss handles are not thread-safe); `with_cursor` draws
    the pointer into the capture, as OSWorld's screenshots have it."""
    import mss

    factory = getattr(mss, "MSS", None) or mss.mss  # mss >= 10 renamed the factory
    kwargs = {"display": display} if display else {}
    if with_cursor:
        kwargs["with_cursor"] = True
    try:
        return factory(**kwargs)
    except Exception as e:  # mss raises ScreenShotError with the X error text
        raise ValueError(f"cannot capture the screen of display {display or '(default)'}: {e}") from e


def monitors(sct: Any) -> list[dict]:
    """mss's monitor list as plain dicts (0 = all monitors, 1.. = each monitor)."""
    return [{k: m[k] for k in ("left", "top", "width", "height")} for m in sct.monitors]


def grab(sct: Any, monitor: dict) -> Image.Image:
    """RGB screenshot of one monitor dict. Its size is the capture's pixels, physical on HiDPI."""
    shot = sct.grab({k: monitor[k] for k in ("left", "top", "width", "height")})
    return Image.frombytes("RGB", shot.size, shot.rgb)


def encode_png(image: Image.Image, *, compress_level: int = 1) -> bytes:
    """PNG bytes. Level 1 is ~5x faster than PIL's default and screenshots barely get bigger."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def draw_marker(
    image: Image.Image,
    point: tuple[float, float],
    label: str | None = None,
    *,
    color: tuple[int, int, int] = (255, 0, 64),
    radius: int | None = None,
) -> Image.Image:
    """A copy of `image` with a ring + crosshair at `point` (image pixels) and an optional label.

    Used to show where an action lands (trajectory reports, dry runs). The ring scales with the image
    so it stays visible on 4K screenshots; an outline keeps it readable on any background."""
    out = image.convert("RGB")  # always a copy
    draw = ImageDraw.Draw(out)
    x, y = float(point[0]), float(point[1])
    r = radius or max(8, round(min(out.size) / 60))
    width = max(2, r // 5)
    for outline, w in (((255, 255, 255), width + 2), (color, width)):
        draw.ellipse((x - r, y - r, x + r, y + r), outline=outline, width=w)
        draw.line((x - 2 * r, y, x - r // 2, y), fill=outline, width=w)
        draw.line((x + r // 2, y, x + 2 * r, y), fill=outline, width=w)
        draw.line((x, y - 2 * r, x, y - r // 2), fill=outline, width=w)
        draw.line((x, y + r // 2, x, y + 2 * r), fill=outline, width=w)
    if label:
        font = label_font(max(12, r))
        tx, ty = x + r + 4, y - r - 4
        left, top, right, bottom = draw.textbbox((tx, ty), label, font=font)
        # keep the label inside the image
        dx = min(0, out.width - 1 - right) - min(0, left)
        dy = min(0, out.height - 1 - bottom) - min(0, top)
        box = (left + dx - 3, top + dy - 2, right + dx + 3, bottom + dy + 2)
        draw.rectangle(box, fill=(0, 0, 0))
        draw.text((tx + dx, ty + dy), label, fill=(255, 255, 255), font=font)
    return out


def label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()
