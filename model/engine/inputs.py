"""Chat messages -> `EngineRequest`: the checkpoint's chat template and processor (model/preprocess.py), then the
vision tensors split per image/video with a content hash and the prompt positions of each item's tokens."""

from __future__ import annotations

import hashlib

import torch

from model.engine.request import EngineRequest, MultiModalItem, SamplingOptions, TokenConstraint
from model.preprocess import Preprocessor


def content_hash(kind: str, grid_thw: torch.Tensor, pixel_values: torch.Tensor) -> bytes:
    h = hashlib.blake2b(kind.encode(), digest_size=16)
    h.update(grid_thw.to(torch.int64).contiguous().numpy().tobytes())
    h.update(pixel_values.contiguous().view(torch.uint8).numpy().data)
    return h.digest()


def split_items(input_ids: list[int], vision: dict[str, torch.Tensor], image_token_id: int, video_token_id: int,
                merge_size: int) -> list[MultiModalItem]:
    """The processor's concatenated vision tensors -> one MultiModalItem per image and per video, prompt order."""
    ids = torch.tensor(input_ids, dtype=torch.int64)
    items = []
    for kind, token_id, pixels, grids in (("image", image_token_id, vision.get("pixel_values"),
                                           vision.get("image_grid_thw")),
                                          ("video", video_token_id, vision.get("pixel_values_videos"),
                                           vision.get("video_grid_thw"))):
        positions = (ids == token_id).nonzero().squeeze(-1)
        if grids is None:
            if positions.numel():
                raise ValueError(f"the prompt has {positions.numel()} {kind} tokens but no {kind} was given")
            continue
        rows = grids.prod(-1).tolist()
        embeds = [r // merge_size ** 2 for r in rows]
        if sum(embeds) != positions.numel():
            raise ValueError(f"the prompt has {positions.numel()} {kind} tokens but the {kind}s need {sum(embeds)}")
        row0 = tok0 = 0
        for grid, n_rows, n_embeds in zip(grids, rows, embeds):
            pv = pixels[row0:row0 + n_rows]
            g = grid[None].clone()
            items.append(MultiModalItem(kind, content_hash(kind, g, pv), pv, g, positions[tok0:tok0 + n_embeds]))
            row0, tok0 = row0 + n_rows, tok0 + n_embeds
    items.sort(key=lambda it: int(it.offsets[0]))
    return items


def request_from_messages(pre: Preprocessor, config, messages: list[dict], sampling: SamplingOptions | None = None,
                          tools: list[dict] | None = None, constraint: TokenConstraint | None = None,
                          request_id: str = "", add_generation_prompt: bool = True) -> EngineRequest:
    """Render `messages` (Qwen/OpenAI format, PIL images or data URLs) into an engine request."""
    text, vision = pre.render(messages, add_generation_prompt=add_generation_prompt, tools=tools)
    ids = pre.tokenizer(text, add_special_tokens=False)["input_ids"]
    return request_from_ids(ids, vision, config, sampling, constraint, request_id)


def request_from_ids(ids: list[int], vision: dict[str, torch.Tensor], config, sampling: SamplingOptions | None = None,
                     constraint: TokenConstraint | None = None, request_id: str = "") -> EngineRequest:
    items = split_items(ids, vision, config.image_token_id, config.video_token_id, config.vision.spatial_merge_size)
    return EngineRequest(list(ids), items, sampling or SamplingOptions(), constraint, request_id)
