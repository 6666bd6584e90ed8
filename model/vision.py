"""Qwen3-VL vision encoder: patch embedding, interpolated learned positions, 2-D rotary ViT blocks with
per-image attention, the 2x2 patch merger and the DeepStack mergers.

Input rows are the processor's pixel_values (one 2x16x16x3 patch per row, merge-block order, all images and
videos concatenated); output is one row per merged 2x2 block, plus one tensor per DeepStack level.
Module and parameter names follow the checkpoint (`model.visual.*`).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import VisionConfig
from model.rope import apply_rotary, vision_patch_coords, vision_rotary_cos_sin

ACTIVATIONS = {
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "silu": F.silu,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"config.json: unsupported activation {name!r} (known: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


class PatchEmbed(nn.Module):
    """Conv3d with kernel == stride == the whole patch is a matmul on the flattened [C, t, py, px] row.

    The checkpoint's Conv3d weight [D, C, t, p, p] is loaded into `proj` as [D, C*t*p*p] (loader)."""

    def __init__(self, patch_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(patch_dim, dim, bias=True)

    def forward(self, x: Tensor) -> Tensor:  # [N, C*t*p*p] -> [N, D]
        return self.proj(x.to(self.proj.weight.dtype))


class VisionAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, segments: "Segments") -> Tensor:
        N = x.shape[0]
        q, k, v = self.qkv(x).view(N, 3, self.num_heads, -1).unbind(1)     # each [N, nh, hv]
        # rotary in fp32, as the reference does, then back to the activation dtype
        q = apply_rotary(q.float(), cos[:, None], sin[:, None]).to(x.dtype)
        k = apply_rotary(k.float(), cos[:, None], sin[:, None]).to(x.dtype)
        out = segments.attention(q, k, v)                                 # [N, nh, hv]
        return self.proj(out.reshape(N, -1))


class VisionMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.linear_fc1 = nn.Linear(dim, hidden, bias=True)
        self.linear_fc2 = nn.Linear(hidden, dim, bias=True)
        self.act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_fc2(self.act(self.linear_fc1(x)))


class VisionBlock(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=1e-6)
        self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=1e-6)
        self.attn = VisionAttention(cfg.hidden_size, cfg.num_heads)
        self.mlp = VisionMLP(cfg.hidden_size, cfg.intermediate_size, cfg.hidden_act)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, segments: "Segments") -> Tensor:
        x = x + self.attn(self.norm1(x), cos, sin, segments)
        return x + self.mlp(self.norm2(x))


class PatchMerger(nn.Module):
    """Concatenate each 2x2 block (4 consecutive rows) and project to the text width.

    Main merger: LayerNorm over D before the concat; DeepStack mergers: LayerNorm over 4D after it."""

    def __init__(self, dim: int, out_dim: int, merge: int, postshuffle_norm: bool):
        super().__init__()
        self.merged_dim = dim * merge * merge
        self.postshuffle_norm = postshuffle_norm
        self.norm = nn.LayerNorm(self.merged_dim if postshuffle_norm else dim, eps=1e-6)
        self.linear_fc1 = nn.Linear(self.merged_dim, self.merged_dim, bias=True)
        self.linear_fc2 = nn.Linear(self.merged_dim, out_dim, bias=True)

    def forward(self, x: Tensor) -> Tensor:  # [N, D] -> [N/4, out]
        if self.postshuffle_norm:
            x = self.norm(x.view(-1, self.merged_dim))
        else:
            x = self.norm(x).view(-1, self.merged_dim)
        return self.linear_fc2(F.gelu(self.linear_fc1(x)))


class Segments:
    """Bidirectional attention restricted to each image / video temporal patch, in one call per layer.

    Equal-length segments (one image, or all frames of one video) are a plain batch of sequences; mixed
    lengths use a block-diagonal mask (or varlen flash attention on CUDA)."""

    def __init__(self, grid_thw: Tensor, device: torch.device, dtype: torch.dtype):
        lengths = torch.repeat_interleave(grid_thw[:, 1] * grid_thw[:, 2], grid_thw[:, 0])
        self.lengths = lengths.tolist()
        self.uniform = len(set(self.lengths)) == 1
        self.cu_seqlens = F.pad(lengths.cumsum(0), (1, 0)).to(device=device, dtype=torch.int32)
        self.mask = None
        self.varlen = device.type == "cuda" and dtype in (torch.float16, torch.bfloat16)
        if not self.uniform and not self.varlen:
            self.mask = self._block_diagonal(device)

    def _block_diagonal(self, device: torch.device) -> Tensor:
        lengths = torch.tensor(self.lengths, device=device)
        segment = torch.repeat_interleave(torch.arange(len(self.lengths), device=device), lengths)
        return segment[:, None] == segment[None, :]                            # [N, N] bool

    def attention(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:  # [N, nh, hv] each -> [N, nh, hv]
        N, nh, hv = q.shape
        if self.uniform:
            S, n = len(self.lengths), self.lengths[0]
            q, k, v = (t.view(S, n, nh, hv).transpose(1, 2) for t in (q, k, v))   # [S, nh, n, hv]
            return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(N, nh, hv)
        if self.varlen:  # flash attention over packed sequences
            try:
                from torch.nn.attention.varlen import varlen_attn

                max_len = max(self.lengths)
                return varlen_attn(q, k, v, self.cu_seqlens, self.cu_seqlens, max_len, max_len)
            except (ImportError, RuntimeError, NotImplementedError) as e:  # e.g. a GPU without flash attention
                warnings.warn(f"varlen flash attention unavailable ({type(e).__name__}); "
                              "using a block-diagonal mask", stacklevel=2)
                self.varlen = False
                self.mask = self._block_diagonal(q.device)
        q, k, v = (t.transpose(0, 1)[None] for t in (q, k, v))                     # [1, nh, N, hv]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
        return out[0].transpose(0, 1)


class VisionEncoder(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.side = int(round(cfg.num_position_embeddings ** 0.5))
        if self.side * self.side != cfg.num_position_embeddings:
            raise ValueError(f"config.json: vision num_position_embeddings={cfg.num_position_embeddings} "
                             "is not a square grid")
        if max(cfg.deepstack_visual_indexes, default=-1) >= cfg.depth:
            raise ValueError(f"config.json: deepstack_visual_indexes {list(cfg.deepstack_visual_indexes)} "
                             f"exceed the vision depth {cfg.depth}")
        self.patch_embed = PatchEmbed(cfg.patch_dim, cfg.hidden_size)
        self.pos_embed = nn.Embedding(cfg.num_position_embeddings, cfg.hidden_size)
        self.blocks = nn.ModuleList(VisionBlock(cfg) for _ in range(cfg.depth))
        m = cfg.spatial_merge_size
        self.merger = PatchMerger(cfg.hidden_size, cfg.out_hidden_size, m, postshuffle_norm=False)
        self.deepstack_merger_list = nn.ModuleList(
            PatchMerger(cfg.hidden_size, cfg.out_hidden_size, m, postshuffle_norm=True)
            for _ in cfg.deepstack_visual_indexes)

    def position_embedding(self, row: Tensor, col: Tensor, h: Tensor, w: Tensor) -> Tensor:
        """Bilinear (align_corners=True) resampling of the learned side x side table at each patch: [N, D]."""
        side = self.side

        def taps(index: Tensor, size: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            src = index.float() * (side - 1) / torch.clamp(size - 1, min=1)
            lo = src.floor()
            frac = src - lo
            lo = lo.long()
            return lo, (lo + 1).clamp(max=side - 1), frac

        r0, r1, fr = taps(row, h)
        c0, c1, fc = taps(col, w)
        idx = torch.stack((r0 * side + c0, r0 * side + c1, r1 * side + c0, r1 * side + c1), dim=1)   # [N, 4]
        wts = torch.stack(((1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc), dim=1)      # [N, 4]
        return (self.pos_embed(idx) * wts[..., None]).sum(1)   # fp32 weights: summed in fp32, as the reference

    def forward(self, pixel_values: Tensor, grid_thw: Tensor) -> tuple[Tensor, list[Tensor]]:
        """pixel_values [N, C*t*p*p], grid_thw [n_items, 3] -> merged [N/4, H_text], deepstack list of [N/4, H_text]."""
        device = self.pos_embed.weight.device
        grid_thw = grid_thw.to(device).long()
        m = self.cfg.spatial_merge_size
        if grid_thw.dim() != 2 or grid_thw.shape[1] != 3 or bool((grid_thw[:, 1:] % m != 0).any()):
            raise ValueError(f"grid_thw must be [n, 3] rows of (t, h, w) with h and w multiples of {m}, "
                             f"got {grid_thw.tolist()}")
        if int(grid_thw.prod(-1).sum()) != pixel_values.shape[0]:
            raise ValueError(f"pixel rows ({pixel_values.shape[0]}) do not match grid_thw "
                             f"({int(grid_thw.prod(-1).sum())} patches)")
        row, col, h, w = vision_patch_coords(grid_thw, self.cfg.spatial_merge_size)
        x = self.patch_embed(pixel_values.to(device))                       # [N, D]
        x = x + self.position_embedding(row, col, h, w).to(x.dtype)
        cos, sin = vision_rotary_cos_sin(row, col, self.cfg.head_dim, self.cfg.rope_theta)   # [N, hv] fp32
        segments = Segments(grid_thw, device, x.dtype)
        deepstack = []
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, segments)
            if i in self.cfg.deepstack_visual_indexes:
                level = self.cfg.deepstack_visual_indexes.index(i)
                deepstack.append(self.deepstack_merger_list[level](x))
        return self.merger(x), deepstack
