"""One engine step on the model: pack the scheduled chunks into one token row, embed it (vision features from the
encoder cache, encoded on first use), run the text decoder over the paged KV cache, and return the next-token
logits of every chunk that reaches the end of its request's tokens.

Tensor parallelism: rank 0 (this process) builds the packed input embeddings and the KV layout; the decoder
forward (`decoder_forward`) runs on every rank in lockstep through the model's worker pool, each rank holding the
KV cache of its own kv heads. Only rank 0 needs logits, so workers stop after the decoder.
"""

from __future__ import annotations

import torch
from torch import Tensor

from model.engine.encoder_cache import EncoderCache, Features
from model.engine.kv_cache import PagedKVCache, PagedStep, StepLayout
from model.engine.scheduler import Chunk, Sequence
from model.rope import mrope_cos_sin, rope_index

_WORKER_CACHE = "_engine_kv_cache"     # attribute of a TP worker's model holding its PagedKVCache


def local_kv_heads(model) -> int:
    return model.language_model.layers[0].self_attn.num_kv_heads


def allocate_kv(model, num_blocks: int, block_size: int) -> PagedKVCache:
    t = model.config.text
    return PagedKVCache(t.num_hidden_layers, num_blocks, block_size, local_kv_heads(model), t.head_dim,
                        model.dtype, model.device)


def worker_init(model, num_blocks: int, block_size: int) -> None:
    """Runs on a TP worker (model/parallel.py worker_main): its share of the paged KV cache."""
    setattr(model, _WORKER_CACHE, allocate_kv(model, num_blocks, block_size))


def worker_free(model) -> None:
    if hasattr(model, _WORKER_CACHE):
        delattr(model, _WORKER_CACHE)


@torch.inference_mode()
def decoder_forward(model, h: Tensor, positions: Tensor, layout: StepLayout, visual_index: Tensor | None,
                    deepstack: list[Tensor] | None, cache: PagedKVCache | None = None) -> Tensor:
    """h [1, N, H] packed input embeddings, positions [3, N] -> final-normed hidden states [1, N, H]."""
    device = model.device
    cache = cache if cache is not None else getattr(model, _WORKER_CACHE)
    h = h.to(device)
    layout = StepLayout(layout.slots.to(device), [(a, n, c.to(device)) for a, n, c in layout.prefill],
                        *(None if t is None else t.to(device)
                          for t in (layout.decode_rows, layout.decode_slots, layout.decode_valid)))
    cos, sin = mrope_cos_sin(positions.to(device)[:, None], model._inv_freq, model._slot_axis, h.dtype)
    if visual_index is not None:
        visual_index = visual_index.to(device)
        deepstack = [d.to(device) for d in deepstack]
    return model.language_model(h, cos, sin, PagedStep(cache, layout), None, visual_index, deepstack)


def worker_forward(model, **inputs) -> None:
    decoder_forward(model, **inputs)


def prompt_positions(model, tokens: list[int], items) -> tuple[Tensor, int]:
    """M-RoPE positions [3, L] of a prompt and its rope delta (computed once per request, design doc §1.5)."""
    cfg = model.config
    ids = torch.tensor([tokens], dtype=torch.long)
    grids = {kind: [it.grid_thw for it in items if it.kind == kind] for kind in ("image", "video")}
    image_grid = torch.cat(grids["image"]) if grids["image"] else None
    video_grid = torch.cat(grids["video"]) if grids["video"] else None
    positions, delta = rope_index(ids, torch.ones_like(ids), image_grid, video_grid, cfg.image_token_id,
                                  cfg.video_token_id, cfg.vision.spatial_merge_size)
    return positions[:, 0], int(delta[0])


class ModelRunner:
    def __init__(self, model, num_blocks: int, block_size: int, encoder_cache: EncoderCache):
        self.model = model
        self.block_size = block_size
        self.encoder_cache = encoder_cache
        self.encoder_calls = 0          # images/videos run through the vision encoder
        self._offsets = torch.arange(block_size)
        self.workers = model._workers
        if model.tp.world_size > 1 and self.workers is None:
            raise ValueError("the engine drives tensor-parallel workers started by "
                             "Qwen3VL.from_pretrained(..., tensor_parallel_size=N); under torchrun use generate()")
        self.cache = allocate_kv(model, num_blocks, block_size)
        if self.workers is not None:
            self.workers.run("model.engine.runner:worker_init", dict(num_blocks=num_blocks, block_size=block_size),
                             lambda: None)

    def close(self) -> None:
        if self.workers is not None and not self.workers.closed:
            self.workers.run("model.engine.runner:worker_free", {}, lambda: None)

    # ------------------------------------------------------------------ inputs

    def _features(self, seq: Sequence, item) -> Features:
        features = self.encoder_cache.get(item.hash, seq.request_id)
        if features is None:
            m = self.model
            with torch.inference_mode():
                main, levels = m.visual(item.pixel_values.to(m.device, m.dtype), item.grid_thw)
            features = (main.to(m.dtype), [lv.to(m.dtype) for lv in levels])
            self.encoder_calls += 1
            self.encoder_cache.put(item.hash, features, seq.request_id)
        return features

    def _slots(self, seq: Sequence, start: int, stop: int) -> Tensor:
        """KV slots of tokens start..stop-1 of `seq` (its slot table grows with its blocks, not per step)."""
        bs = self.block_size
        have = 0 if seq.slot_table is None else seq.slot_table.shape[0] // bs
        if have < len(seq.block_ids):
            blocks = torch.tensor(seq.block_ids[have:], dtype=torch.long)
            new = (blocks[:, None] * bs + self._offsets).reshape(-1)
            seq.slot_table = new if seq.slot_table is None else torch.cat([seq.slot_table, new])
        return seq.slot_table[start:stop]

    def prepare(self, chunks: list[Chunk]) -> tuple[Tensor, Tensor, StepLayout, Tensor | None, list[Tensor] | None]:
        m = self.model
        ids, positions, slots, prefill = [], [], [], []
        decode_rows, decode_ctx = [], []
        vis_index, vis_main, vis_levels = [], [], []
        row = 0
        for c in chunks:
            seq, a, b = c.seq, c.start, c.start + c.count
            ids.extend(seq.tokens[a:b])
            p_end = min(b, seq.num_prompt)
            pos = [seq.positions[:, a:p_end]] if a < p_end else []
            if b > seq.num_prompt:
                gen = torch.arange(max(a, seq.num_prompt), b) + seq.rope_delta
                pos.append(gen.expand(3, -1))
            positions.append(torch.cat(pos, dim=1))
            slots.append(self._slots(seq, a, b))
            if c.count == 1 and a > 0:
                decode_rows.append(row)
                decode_ctx.append(self._slots(seq, 0, b))
            else:
                prefill.append((row, c.count, self._slots(seq, 0, b)))
            for item in seq.mm_items:
                inside = (item.offsets >= a) & (item.offsets < b)
                if bool(inside.any()):
                    main, levels = self._features(seq, item)
                    which = inside.nonzero().squeeze(-1)
                    vis_index.append(item.offsets[which] - a + row)
                    vis_main.append(main[which.to(main.device)])
                    vis_levels.append([lv[which.to(lv.device)] for lv in levels])
            row += c.count
        token_ids = torch.tensor(ids, dtype=torch.long, device=m.device)
        with torch.inference_mode():
            h = m.language_model.embed_tokens(token_ids)                  # [N, H]
        visual_index = deepstack = None
        if vis_index:
            visual_index = torch.cat(vis_index)
            h[visual_index.to(h.device)] = torch.cat(vis_main).to(h.dtype)
            deepstack = [torch.cat(level) for level in zip(*vis_levels)]
        layout = StepLayout(torch.cat(slots), prefill)
        if decode_rows:
            longest = max(s.shape[0] for s in decode_ctx)
            padded = torch.empty(len(decode_ctx), longest, dtype=torch.long)
            valid = torch.zeros(len(decode_ctx), longest, dtype=torch.bool)
            for i, s in enumerate(decode_ctx):
                # padding repeats the row's own first slot: written, so finite (a masked NaN would still leak
                # into the output through 0 * NaN in the value product)
                padded[i] = s[0]
                padded[i, :s.shape[0]] = s
                valid[i, :s.shape[0]] = True
            layout.decode_rows = torch.tensor(decode_rows, dtype=torch.long)
            layout.decode_slots = padded
            layout.decode_valid = None if bool(valid.all()) else valid
        return h[None], torch.cat(positions, dim=1), layout, visual_index, deepstack

    # ------------------------------------------------------------------ forward

    def execute(self, chunks: list[Chunk]) -> Tensor:
        """Logits [n_sampling_chunks, V] fp32, in the order of the chunks that sample."""
        h, positions, layout, visual_index, deepstack = self.prepare(chunks)
        inputs = dict(h=h, positions=positions, layout=layout, visual_index=visual_index, deepstack=deepstack)

        def local():
            return decoder_forward(self.model, **inputs, cache=self.cache)

        if self.workers is None:
            hidden = local()
        else:
            hidden = self.workers.run("model.engine.runner:worker_forward", inputs, local)
        ends, row = [], 0
        for c in chunks:
            row += c.count
            if c.samples:
                ends.append(row - 1)
        if not ends:
            return torch.empty(0)
        with torch.inference_mode():
            last = hidden[0].index_select(0, torch.tensor(ends, device=hidden.device))
            return self.model.lm_head(last).float()
