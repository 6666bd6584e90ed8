"""Qwen3-VL preprocessing: images, videos and chat messages -> model inputs.

Images follow transformers' `Qwen2VLImageProcessorPil` (PIL bicubic resize, float64 rescale, float32
normalize) so `pixel_values` are bit-equal to it. Videos follow `Qwen3VLVideoProcessor` (frame sampling,
temporal smart_resize, fused normalize) with PIL resizing per frame, and their placeholders follow vLLM /
transformers 4.57: the template's `<|vision_start|><|video_pad|><|vision_end|>` triple is replaced by one
`<{t:.1f} seconds><|vision_start|><|video_pad|>*n<|vision_end|>` group per temporal patch.
Spec: shared/docs/qwen3vl-runtime.md §2, §9.3.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import jinja2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
VIDEO_PLACEHOLDER = VISION_START + VIDEO_PAD + VISION_END
_PLACEHOLDER_RE = re.compile("(" + re.escape(VIDEO_PLACEHOLDER) + "|" + re.escape(IMAGE_PAD) + ")")

MAX_ASPECT_RATIO = 200

# Values of the Hub's Qwen3-VL preprocessor_config.json / video_preprocessor_config.json; used only for
# keys a checkpoint does not set (the transformers class defaults are Qwen2-VL's and wrong for Qwen3-VL).
HUB_IMAGE_MIN_PIXELS = 65536
HUB_IMAGE_MAX_PIXELS = 16777216
HUB_VIDEO_MIN_PIXELS = 4096
HUB_VIDEO_MAX_PIXELS = 25165824
VIDEO_SAMPLE_FPS = 2.0
VIDEO_MIN_FRAMES = 4
VIDEO_MAX_FRAMES = 768


# ----------------------------------------------------------------------------------------------------
# sizes


def _check_aspect_ratio(height: int, width: int) -> None:
    if min(height, width) <= 0:
        raise ValueError(f"image has an empty side: {height}x{width}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"image aspect ratio {max(height, width) / min(height, width):.1f} of {height}x{width} is larger than "
            f"{MAX_ASPECT_RATIO}; crop it first")


def smart_resize(height: int, width: int, factor: int = 32, min_pixels: int = HUB_IMAGE_MIN_PIXELS,
                 max_pixels: int = HUB_IMAGE_MAX_PIXELS) -> tuple[int, int]:
    """(height, width) rounded to multiples of `factor` with the pixel count inside [min_pixels, max_pixels]."""
    _check_aspect_ratio(height, width)
    h_bar = round(height / factor) * factor  # Python round: banker's rounding, as transformers
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def smart_resize_video(num_frames: int, height: int, width: int, factor: int = 32, temporal_factor: int = 2,
                       min_pixels: int = HUB_VIDEO_MIN_PIXELS, max_pixels: int = HUB_VIDEO_MAX_PIXELS) -> tuple[int, int]:
    """One (height, width) for all frames; min/max_pixels bound the TOTAL pixels over time (Qwen3VLVideoProcessor)."""
    # transformers raises for a single frame; it is padded to temporal_factor frames anyway, so size it as such
    num_frames = max(num_frames, temporal_factor)
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    _check_aspect_ratio(height, width)
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt(num_frames * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


# ----------------------------------------------------------------------------------------------------
# loading


def _describe(image: Any) -> str:
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"<{len(image)} bytes>"
    if isinstance(image, str) and image.startswith("data:") and len(image) > 64:
        return image[:48] + "..."
    if isinstance(image, np.ndarray):
        return f"<array {image.shape} {image.dtype}>"
    return str(image) if isinstance(image, (str, Path)) else f"<{type(image).__name__}>"


def _open_bytes(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:   # its message names the BytesIO object, which tells a user nothing
        raise ValueError("not an image format Pillow can read (PNG, JPEG, WebP, GIF, BMP, TIFF ...)") from None
    image.load()  # decode now so truncated/corrupt data fails here, not later
    return image


def _decode_data_url(url: str) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep:
        raise ValueError("data URL has no ',' separating header and data")
    if not header.endswith(";base64"):
        raise ValueError("only base64 data URLs are supported (data:image/png;base64,...)")
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"invalid base64 data: {err}") from None


def _read(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        array = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
        if array.dtype != np.uint8:
            raise ValueError(f"expected a uint8 array, got {array.dtype} (convert with (x * 255).round().astype(np.uint8))")
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
            raise ValueError(f"expected an HxW, HxWx3 or HxWx4 array, got shape {image.shape}")
        return Image.fromarray(np.ascontiguousarray(array))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _open_bytes(bytes(image))
    if isinstance(image, (str, Path)):
        source = str(image)
        if source.startswith("data:"):
            return _open_bytes(_decode_data_url(source))
        if source.startswith(("http://", "https://")):
            raise ValueError("remote URLs are not fetched; download the image and pass a path or bytes")
        path = Path(source.removeprefix("file://")).expanduser()
        if not path.is_file():
            raise ValueError("no such file")
        return _open_bytes(path.read_bytes())
    raise ValueError(f"unsupported type {type(image).__name__} (use PIL, numpy, a path, bytes or a data: URL)")


def load_image(image: Any) -> Image.Image:
    """Any supported image input -> an RGB PIL image; transparency is composited onto white (as transformers)."""
    try:
        pil = _read(image)
        if "A" in pil.getbands() or pil.info.get("transparency") is not None:
            rgba = pil.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return pil if pil.mode == "RGB" else pil.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        reason = str(err) or type(err).__name__
        raise ValueError(f"cannot read image {_describe(image)}: {reason}") from None


# ----------------------------------------------------------------------------------------------------
# pixels


def _resize(image: Image.Image, height: int, width: int, resample: int) -> torch.Tensor:
    """PIL resize exactly as transformers' PIL backend -> uint8 [3, height, width]."""
    resized = image.resize((width, height), resample=resample)
    return torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1)


def _patchify(frames: torch.Tensor, patch_size: int, temporal_patch_size: int, merge_size: int
              ) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """frames [T, C, H, W] -> rows [gt*gh*gw, C*tp*p*p] in merge-block order, grid (gt, gh, gw).

    T is padded to a multiple of temporal_patch_size by repeating the last frame (an image is T=1)."""
    if pad := -frames.shape[0] % temporal_patch_size:
        frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
    t, c, h, w = frames.shape
    gt, gh, gw, m, p = t // temporal_patch_size, h // patch_size, w // patch_size, merge_size, patch_size
    x = frames.reshape(gt, temporal_patch_size, c, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # [gt, gh/m, gw/m, m, m, C, tp, p, p]
    return x.reshape(gt * gh * gw, c * temporal_patch_size * p * p), (gt, gh, gw)


def preprocess_images(images: Sequence[Any], *, patch_size: int = 16, temporal_patch_size: int = 2,
                      merge_size: int = 2, image_mean: Sequence[float], image_std: Sequence[float],
                      min_pixels: int, max_pixels: int, rescale_factor: float = 1 / 255,
                      resample: int = Image.BICUBIC) -> tuple[torch.Tensor, torch.Tensor]:
    """Images -> pixel_values [sum t*h*w, 3*tp*p*p] float32, image_grid_thw [n, 3] int64."""
    if not images:
        raise ValueError("preprocess_images needs at least one image")
    mean = torch.tensor(image_mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(image_std, dtype=torch.float32)[:, None, None]
    rows, grids = [], []
    for image in images:
        image = load_image(image)
        height, width = smart_resize(image.height, image.width, patch_size * merge_size, min_pixels, max_pixels)
        pixels = _resize(image, height, width, resample)  # [3, H, W] uint8
        # rescale in float64 then normalize in float32: transformers' numpy order, so results are bit-equal
        x = ((pixels.to(torch.float64) * rescale_factor).to(torch.float32) - mean) / std
        patches, grid = _patchify(x[None], patch_size, temporal_patch_size, merge_size)
        rows.append(patches)
        grids.append(grid)
    return torch.cat(rows), torch.tensor(grids, dtype=torch.int64)


def sample_frame_indices(total_frames: int, fps: float, sample_fps: float = VIDEO_SAMPLE_FPS,
                         min_frames: int = VIDEO_MIN_FRAMES, max_frames: int = VIDEO_MAX_FRAMES) -> list[int]:
    """Indices of the frames kept when a `fps` clip is sampled at `sample_fps` (Qwen3VLVideoProcessor.sample_frames)."""
    n = int(total_frames / fps * sample_fps)
    n = min(max(n, min_frames), max_frames, total_frames)
    return np.linspace(0, total_frames - 1, n).round().astype(int).tolist()


def frame_timestamps(indices: Sequence[int], fps: float, temporal_patch_size: int = 2) -> list[float]:
    """Seconds of each temporal patch: mean time of its first and last frame (indices padded like the frames)."""
    idx = list(indices) + [indices[-1]] * (-len(indices) % temporal_patch_size)
    seconds = [i / fps for i in idx]
    return [(seconds[j] + seconds[j + temporal_patch_size - 1]) / 2 for j in range(0, len(seconds), temporal_patch_size)]


def preprocess_video(frames: Sequence[Any] | np.ndarray, fps: float, *, patch_size: int = 16,
                     temporal_patch_size: int = 2, merge_size: int = 2,
                     image_mean: Sequence[float] = (0.5, 0.5, 0.5), image_std: Sequence[float] = (0.5, 0.5, 0.5),
                     min_pixels: int = HUB_VIDEO_MIN_PIXELS, max_pixels: int = HUB_VIDEO_MAX_PIXELS,
                     frame_min_pixels: int | None = None, frame_max_pixels: int | None = None,
                     sample_fps: float = VIDEO_SAMPLE_FPS, min_frames: int = VIDEO_MIN_FRAMES,
                     max_frames: int = VIDEO_MAX_FRAMES, rescale_factor: float = 1 / 255,
                     resample: int = Image.BICUBIC) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Frames of a clip recorded at `fps` -> pixel_values_videos [gt*gh*gw, 3*tp*p*p], video_grid_thw [1, 3],
    timestamps (seconds, one per temporal patch).

    min/max_pixels bound the total pixels of the sampled clip (the processor's `size`); frame_min/max_pixels,
    when given, are per-frame bounds (qwen-vl-utils' per-item values) and replace them, times the frame count."""
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"video fps must be a positive number, got {fps!r}") from None
    if not fps > 0:
        raise ValueError(f"video fps must be a positive number, got {fps!r}")
    if len(frames) == 0:
        raise ValueError("video has no frames")
    indices = sample_frame_indices(len(frames), fps, sample_fps, min_frames, max_frames)
    if frame_min_pixels is not None:
        min_pixels = frame_min_pixels * len(indices)
    if frame_max_pixels is not None:
        max_pixels = frame_max_pixels * len(indices)
    images = [load_image(frames[i]) for i in indices]
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        raise ValueError(f"all frames of a video must have one size, got {sorted(sizes)}")
    height, width = smart_resize_video(len(images), images[0].height, images[0].width, patch_size * merge_size,
                                       temporal_patch_size, min_pixels, max_pixels)
    pixels = torch.stack([_resize(im, height, width, resample) for im in images])  # [T, 3, H, W] uint8
    # the video processor fuses rescale into normalize: (x - mean/r) / (std/r), in float32
    mean = (torch.tensor(image_mean, dtype=torch.float32) * (1.0 / rescale_factor))[:, None, None]
    std = (torch.tensor(image_std, dtype=torch.float32) * (1.0 / rescale_factor))[:, None, None]
    x = (pixels.to(torch.float32) - mean) / std
    patches, grid = _patchify(x, patch_size, temporal_patch_size, merge_size)
    return patches, torch.tensor([grid], dtype=torch.int64), frame_timestamps(indices, fps, temporal_patch_size)


# ----------------------------------------------------------------------------------------------------
# checkpoint configuration


@dataclass
class VisionConfig:
    """Preprocessing values of one modality, parsed from the checkpoint's processor json."""
    patch_size: int
    temporal_patch_size: int
    merge_size: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    rescale_factor: float
    resample: int
    min_pixels: int
    max_pixels: int
    # video only
    fps: float = VIDEO_SAMPLE_FPS
    min_frames: int = VIDEO_MIN_FRAMES
    max_frames: int = VIDEO_MAX_FRAMES

    @classmethod
    def from_dict(cls, cfg: dict, base: "VisionConfig | None" = None, *, min_pixels: int, max_pixels: int
                  ) -> "VisionConfig":
        """`cfg` is a preprocessor json; missing keys come from `base`, then from the Hub values."""
        size = cfg.get("size") or {}

        def get(key: str, default):
            return cfg.get(key, getattr(base, key) if base is not None else default)

        return cls(
            patch_size=int(get("patch_size", 16)),
            temporal_patch_size=int(get("temporal_patch_size", 2)),
            merge_size=int(get("merge_size", 2)),
            image_mean=tuple(float(v) for v in get("image_mean", (0.5, 0.5, 0.5))),
            image_std=tuple(float(v) for v in get("image_std", (0.5, 0.5, 0.5))),
            rescale_factor=float(get("rescale_factor", 1 / 255)),
            resample=int(get("resample", Image.BICUBIC)),
            # legacy Qwen2-VL configs carry min_pixels/max_pixels keys; they override size (as transformers)
            min_pixels=int(cfg.get("min_pixels") or size.get("shortest_edge") or min_pixels),
            max_pixels=int(cfg.get("max_pixels") or size.get("longest_edge") or max_pixels),
            fps=float(cfg.get("fps") or VIDEO_SAMPLE_FPS),
            min_frames=int(cfg.get("min_frames") or VIDEO_MIN_FRAMES),
            max_frames=int(cfg.get("max_frames") or VIDEO_MAX_FRAMES),
        )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None


def _load_chat_template(folder: Path, tokenizer) -> str:
    """chat_template.jinja, else the legacy chat_template.json, else tokenizer_config's (transformers' order)."""
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if (folder / "chat_template.json").is_file():
        return _read_json(folder / "chat_template.json")["chat_template"]
    if isinstance(tokenizer.chat_template, str):
        return tokenizer.chat_template
    raise ValueError(f"{folder} has no chat template (chat_template.jinja, chat_template.json or tokenizer_config.json)")


# ----------------------------------------------------------------------------------------------------
# messages


_IMAGE_TYPES = {"image", "image_url"}


def _optional_int(item: dict, key: str) -> int | None:
    if item.get(key) is None:
        return None
    try:
        value = int(item[key])
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a positive integer, got {item[key]!r}") from None
    if value <= 0:
        raise ValueError(f"{key} must be a positive integer, got {item[key]!r}")
    return value


def _image_source(item: dict) -> Any:
    if "image" in item:
        return item["image"]
    if "image_url" in item:
        url = item["image_url"]
        return url.get("url") if isinstance(url, dict) else url
    return item.get("url", item.get("path"))


def _split_content(messages: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """Messages -> (messages for the chat template, image items, video items), media in prompt order.

    Media items reach the template as bare {"type": "image"} / {"type": "video"} so that it renders
    placeholders without seeing pixel data."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    rendered, images, videos = [], [], []
    for n, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise ValueError(f"message {n} must be a dict with a 'role', got {message!r:.80}")
        content = message.get("content")
        if content is None or isinstance(content, str):
            rendered.append(message)
            continue
        if not isinstance(content, list):
            raise ValueError(f"message {n}: content must be a string or a list of items, got {type(content).__name__}")
        items = []
        for item in content:
            if isinstance(item, str):
                item = {"type": "text", "text": item}
            if not isinstance(item, dict):
                raise ValueError(f"message {n}: content items must be dicts, got {type(item).__name__}")
            kind = item.get("type")
            if kind in _IMAGE_TYPES or (kind is None and ("image" in item or "image_url" in item)):
                if _image_source(item) is None:
                    raise ValueError(f"message {n}: image item has no 'image', 'image_url', 'url' or 'path'")
                images.append(item)
                items.append({"type": "image"})
            elif kind == "video" or (kind is None and "video" in item):
                videos.append(item)
                items.append({"type": "video"})
            elif kind == "text" or (kind is None and "text" in item):
                items.append({"type": "text", "text": str(item.get("text", ""))})
            else:
                raise ValueError(f"message {n}: unsupported content item type {kind!r} (text, image, image_url, video)")
        rendered.append({**message, "content": items})
    return rendered, images, videos


# ----------------------------------------------------------------------------------------------------
# the processor


class Preprocessor:
    """Chat messages with images/videos -> Qwen3-VL model inputs, configured from a checkpoint folder."""

    def __init__(self, tokenizer, chat_template: str, image_config: VisionConfig, video_config: VisionConfig, *,
                 eos_token_ids: list[int], pad_token_id: int, min_pixels: int | None = None,
                 max_pixels: int | None = None, video_min_pixels: int | None = None,
                 video_max_pixels: int | None = None):
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.image_config = replace(image_config)
        self.video_config = replace(video_config)
        self.eos_token_ids = list(eos_token_ids)
        self.pad_token_id = int(pad_token_id)
        if min_pixels is not None:
            self.min_pixels = min_pixels
        if max_pixels is not None:
            self.max_pixels = max_pixels
        if video_min_pixels is not None:
            self.video_config.min_pixels = int(video_min_pixels)
        if video_max_pixels is not None:
            self.video_config.max_pixels = int(video_max_pixels)

    # image pixel budget (the `size` of the image processor); video budget lives in video_config
    @property
    def min_pixels(self) -> int:
        return self.image_config.min_pixels

    @min_pixels.setter
    def min_pixels(self, value: int) -> None:
        self.image_config.min_pixels = int(value)

    @property
    def max_pixels(self) -> int:
        return self.image_config.max_pixels

    @max_pixels.setter
    def max_pixels(self, value: int) -> None:
        self.image_config.max_pixels = int(value)

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> "Preprocessor":
        """Load from a local checkpoint folder (Hub layout). kwargs: min_pixels, max_pixels, video_*_pixels."""
        from transformers import AutoTokenizer

        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"checkpoint folder not found: {path}")
        if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.json", "tokenizer_config.json")):
            raise FileNotFoundError(f"{folder} has no tokenizer files (tokenizer.json / tokenizer_config.json)")
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        chat_template = _load_chat_template(folder, tokenizer)

        processor_cfg = _read_json(folder / "processor_config.json") if (folder / "processor_config.json").is_file() else {}
        if (folder / "preprocessor_config.json").is_file():
            image_cfg = _read_json(folder / "preprocessor_config.json")
        elif "image_processor" in processor_cfg:
            image_cfg = processor_cfg["image_processor"]
        else:
            raise FileNotFoundError(f"{folder} has no image processor config (preprocessor_config.json or "
                                    "processor_config.json with an 'image_processor' entry)")
        image_config = VisionConfig.from_dict(image_cfg, min_pixels=HUB_IMAGE_MIN_PIXELS, max_pixels=HUB_IMAGE_MAX_PIXELS)
        if (folder / "video_preprocessor_config.json").is_file():
            video_cfg = _read_json(folder / "video_preprocessor_config.json")
        else:
            video_cfg = processor_cfg.get("video_processor", {})
        # without a video config: the image values (patch sizes, mean/std) plus the Hub's video pixel budget
        video_config = VisionConfig.from_dict(video_cfg, image_config, min_pixels=HUB_VIDEO_MIN_PIXELS,
                                              max_pixels=HUB_VIDEO_MAX_PIXELS)

        generation_cfg = (_read_json(folder / "generation_config.json")
                          if (folder / "generation_config.json").is_file() else {})
        eos = generation_cfg.get("eos_token_id", tokenizer.eos_token_id)
        eos_token_ids = [int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None]
        if not eos_token_ids:
            raise ValueError(f"{folder}: no eos token in generation_config.json or the tokenizer")
        pad = next((p for p in (tokenizer.pad_token_id, generation_cfg.get("pad_token_id")) if p is not None),
                   eos_token_ids[0])
        return cls(tokenizer, chat_template, image_config, video_config, eos_token_ids=eos_token_ids,
                   pad_token_id=pad, **kwargs)

    # -- rendering

    def _image_inputs(self, items: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        cfg = self.image_config
        return [preprocess_images(
            [_image_source(item)], patch_size=cfg.patch_size, temporal_patch_size=cfg.temporal_patch_size,
            merge_size=cfg.merge_size, image_mean=cfg.image_mean, image_std=cfg.image_std,
            min_pixels=_optional_int(item, "min_pixels") or cfg.min_pixels,
            max_pixels=_optional_int(item, "max_pixels") or cfg.max_pixels,
            rescale_factor=cfg.rescale_factor, resample=cfg.resample) for item in items]

    def _video_inputs(self, items: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor, list[float]]]:
        cfg = self.video_config
        out = []
        for item in items:
            frames = item.get("video")
            if isinstance(frames, (str, Path)):
                raise ValueError(f"video files are not decoded here; pass the frames as a list: {_describe(frames)}")
            if not isinstance(frames, (list, tuple, np.ndarray)):
                raise ValueError("a video item needs 'video': a list of frames (PIL, numpy, paths) and 'fps'")
            # frames given without a rate are taken as already sampled at the processor's rate (qwen-vl-utils)
            out.append(preprocess_video(
                frames, item.get("fps", cfg.fps), patch_size=cfg.patch_size,
                temporal_patch_size=cfg.temporal_patch_size, merge_size=cfg.merge_size, image_mean=cfg.image_mean,
                image_std=cfg.image_std, min_pixels=cfg.min_pixels,
                max_pixels=_optional_int(item, "total_pixels") or cfg.max_pixels,
                frame_min_pixels=_optional_int(item, "min_pixels"), frame_max_pixels=_optional_int(item, "max_pixels"),
                sample_fps=cfg.fps, min_frames=cfg.min_frames, max_frames=cfg.max_frames,
                rescale_factor=cfg.rescale_factor, resample=cfg.resample))
        return out

    def render(self, messages: list[dict], add_generation_prompt: bool = True, tools: list[dict] | None = None
               ) -> tuple[str, dict[str, torch.Tensor]]:
        """Messages -> (prompt text with every placeholder expanded, vision tensors)."""
        rendered, image_items, video_items = _split_content(messages)
        try:
            text = self.tokenizer.apply_chat_template(rendered, chat_template=self.chat_template, tools=tools,
                                                      add_generation_prompt=add_generation_prompt, tokenize=False)
        except jinja2.TemplateError as err:  # e.g. the template's raise_exception() on a malformed conversation
            raise ValueError(f"the chat template rejected the messages: {err}") from None
        images = self._image_inputs(image_items)
        videos = self._video_inputs(video_items)

        pieces = _PLACEHOLDER_RE.split(text)  # text, placeholder, text, placeholder, ...
        n_image_slots = pieces[1::2].count(IMAGE_PAD)
        n_video_slots = len(pieces[1::2]) - n_image_slots
        if (n_image_slots, n_video_slots) != (len(images), len(videos)):
            raise ValueError(
                f"the chat template rendered {n_image_slots} image and {n_video_slots} video placeholders for "
                f"{len(images)} images and {len(videos)} videos (does a text item contain {IMAGE_PAD}?)")
        image_iter, video_iter = iter(images), iter(videos)
        merge = self.image_config.merge_size ** 2
        for i in range(1, len(pieces), 2):
            if pieces[i] == IMAGE_PAD:
                _, grid = next(image_iter)
                pieces[i] = IMAGE_PAD * (int(grid.prod()) // merge)
            else:
                _, grid, stamps = next(video_iter)
                pads = VIDEO_PAD * (int(grid[0, 1] * grid[0, 2]) // self.video_config.merge_size ** 2)
                pieces[i] = "".join(f"<{s:.1f} seconds>{VISION_START}{pads}{VISION_END}" for s in stamps)

        vision: dict[str, torch.Tensor] = {}
        if images:
            vision["pixel_values"] = torch.cat([pv for pv, _ in images])
            vision["image_grid_thw"] = torch.cat([grid for _, grid in images])
        if videos:
            vision["pixel_values_videos"] = torch.cat([pv for pv, _, _ in videos])
            vision["video_grid_thw"] = torch.cat([grid for _, grid, _ in videos])
        return "".join(pieces), vision

    # -- model inputs

    def __call__(self, messages: list[dict], add_generation_prompt: bool = True, tools: list[dict] | None = None
                 ) -> dict[str, torch.Tensor]:
        """One conversation -> input_ids [1, L] int64, attention_mask [1, L], and the vision tensors present."""
        return self.batch([messages], add_generation_prompt=add_generation_prompt, tools=tools)

    def batch(self, conversations: list[list[dict]], add_generation_prompt: bool = True,
              tools: list[dict] | None = None) -> dict[str, torch.Tensor]:
        """Conversations -> LEFT-padded input_ids/attention_mask [B, L]; vision tensors concatenated in order."""
        if not isinstance(conversations, list) or not conversations:
            raise ValueError("batch needs a non-empty list of conversations")
        ids, visions = [], []
        for messages in conversations:
            text, vision = self.render(messages, add_generation_prompt, tools)
            ids.append(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            visions.append(vision)
        length = max(len(row) for row in ids)
        input_ids = torch.full((len(ids), length), self.pad_token_id, dtype=torch.int64)
        attention_mask = torch.zeros((len(ids), length), dtype=torch.int64)
        for b, row in enumerate(ids):
            if row:
                input_ids[b, length - len(row):] = torch.tensor(row, dtype=torch.int64)
                attention_mask[b, length - len(row):] = 1
        out = {"input_ids": input_ids, "attention_mask": attention_mask}
        for key in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
            parts = [v[key] for v in visions if key in v]
            if parts:
                out[key] = torch.cat(parts)
        return out

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Token ids (list, 1-D tensor, or [1, L] tensor) -> text."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() == 2 and ids.shape[0] == 1:
                ids = ids[0]
            if ids.dim() != 1:
                raise ValueError(f"decode takes one sequence, got a tensor of shape {tuple(ids.shape)}")
            ids = ids.tolist()
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
