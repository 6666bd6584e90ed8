"""Rotary embeddings and 3-D (t, h, w) position ids for Qwen3-VL.

Text: interleaved MRoPE. Every token has a (t, h, w) position; frequency slot j takes its angle from axis
T, H or W in the repeating pattern T H W T H W ... (H and W only for j < 3 * mrope_section[1|2]), the tail
is T. Text tokens have t == h == w, which makes this plain 1-D RoPE.

Vision: 2-D axial rotary over (row, col) of each patch inside its image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    return x * cos + rotate_half(x) * sin


# ------------------------------------------------------------------------------------------------ text


def text_inv_freq(head_dim: int, theta: float) -> Tensor:
    exponent = torch.arange(0, head_dim, 2, dtype=torch.float32, device="cpu") / head_dim
    return 1.0 / (theta ** exponent)  # [hd/2]


def mrope_axis_of_slot(mrope_section: tuple[int, int, int], n_slots: int) -> Tensor:
    """For each of the hd/2 frequency slots, which position axis (0=t, 1=h, 2=w) drives it."""
    axis = torch.zeros(n_slots, dtype=torch.long, device="cpu")
    for ax in (1, 2):
        axis[ax: 3 * mrope_section[ax]: 3] = ax
    return axis


def mrope_cos_sin(position_ids: Tensor, inv_freq: Tensor, slot_axis: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """position_ids [3, B, L] -> cos, sin [B, L, hd] in `dtype` (angles in fp32, cast like transformers)."""
    freqs = position_ids[..., None].float() * inv_freq.to(position_ids.device)     # [3, B, L, hd/2]
    idx = slot_axis.to(position_ids.device).view(1, 1, 1, -1).expand(1, *freqs.shape[1:])
    angles = freqs.gather(0, idx)[0]                                              # [B, L, hd/2]
    emb = torch.cat((angles, angles), dim=-1)                                      # [B, L, hd]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rope_index(input_ids: Tensor, attention_mask: Tensor, image_grid_thw: Tensor | None,
               video_grid_thw: Tensor | None, image_token_id: int, video_token_id: int,
               spatial_merge_size: int) -> tuple[Tensor, Tensor]:
    """3-D positions of a (left- or right-padded) batch and the per-row rope delta for decoding.

    input_ids, attention_mask [B, L] -> position_ids [3, B, L] (0 at padding), rope_deltas [B].
    Each image, and each temporal patch of a video, is one "item" of lh x lw visual tokens placed at
    (start + t, start + row, start + col); the next token starts at start + max(lh, lw). Text advances by 1.
    Items are matched to visual tokens in order over the flattened batch, per modality.
    """
    B, L = input_ids.shape
    device = input_ids.device
    valid = attention_mask.bool()
    m = spatial_merge_size

    # Per-token: item span contribution, and (t, row, col) inside its item.
    span = valid.long()                                            # text tokens advance by 1
    inner = torch.zeros(3, B, L, dtype=torch.long, device=device)
    first_of_item = torch.zeros(B, L, dtype=torch.bool, device=device)
    item_span = torch.zeros(B, L, dtype=torch.long, device=device)
    for token_id, grid_thw in ((image_token_id, image_grid_thw), (video_token_id, video_grid_thw)):
        mask = (input_ids == token_id) & valid
        n_tokens = int(mask.sum())
        if n_tokens == 0:
            continue
        if grid_thw is None:
            raise ValueError(f"input_ids contain {n_tokens} visual tokens (id {token_id}) but no grid_thw was given")
        grid = grid_thw.to(device).long()
        if token_id == video_token_id:  # every temporal patch is its own t=1 item
            grid = torch.repeat_interleave(grid, grid[:, 0], dim=0)
            grid[:, 0] = 1
        lt, lh, lw = grid[:, 0], grid[:, 1] // m, grid[:, 2] // m
        per_item = lt * lh * lw
        if int(per_item.sum()) != n_tokens:
            raise ValueError(f"input_ids contain {n_tokens} visual tokens (id {token_id}) but the grids describe "
                             f"{int(per_item.sum())}")
        item = torch.repeat_interleave(torch.arange(len(grid), device=device), per_item)      # [n_tokens]
        k = torch.arange(n_tokens, device=device) - (torch.cumsum(per_item, 0) - per_item)[item]
        hw = (lh * lw)[item]
        inner[0][mask] = k // hw
        inner[1][mask] = (k % hw) // lw[item]
        inner[2][mask] = k % lw[item]
        first = k == 0
        first_of_item[mask] = first
        s = torch.maximum(lh, lw)[item]
        item_span[mask] = s
        span[mask] = torch.where(first, s, torch.zeros_like(s))

    start = torch.cumsum(span, dim=1) - span                        # exclusive cumsum along the row
    # a visual token's item starts where its first token started: undo the span the first token added
    base = start - torch.where(first_of_item | (item_span == 0), 0, item_span)
    position_ids = (base.unsqueeze(0) + inner) * valid.unsqueeze(0)   # [3, B, L]
    rope_deltas = position_ids.amax(dim=(0, 2)) + 1 - valid.sum(1)
    return position_ids, rope_deltas


# ---------------------------------------------------------------------------------------------- vision


def vision_patch_coords(grid_thw: Tensor, merge: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(row, col, grid_h, grid_w) of every patch row of pixel_values, in merge-block order.

    Rows are (t, block_row, block_col, in_row, in_col) within each image/video; all images concatenated.
    """
    counts = grid_thw.prod(-1)
    heights = torch.repeat_interleave(grid_thw[:, 1], counts)
    widths = torch.repeat_interleave(grid_thw[:, 2], counts)
    starts = torch.repeat_interleave(F.pad(counts.cumsum(0)[:-1], (1, 0)), counts)
    within = (torch.arange(int(counts.sum()), device=grid_thw.device) - starts) % (heights * widths)
    blocks_w = widths // merge
    in_col = within % merge
    in_row = (within // merge) % merge
    block_col = (within // (merge * merge)) % blocks_w
    block_row = within // (merge * merge * blocks_w)
    return block_row * merge + in_row, block_col * merge + in_col, heights, widths


def vision_rotary_cos_sin(row: Tensor, col: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """row, col [N] -> cos, sin [N, hv] in fp32: first hv/4 slots from the row, next hv/4 from the column."""
    quarter = head_dim // 2
    inv = 1.0 / (theta ** (torch.arange(0, quarter, 2, dtype=torch.float32, device=row.device) / quarter))
    angles = torch.cat((row[:, None].float() * inv, col[:, None].float() * inv), dim=-1)   # [N, hv/2]
    emb = torch.cat((angles, angles), dim=-1)                                             # [N, hv]
    return emb.cos(), emb.sin()
