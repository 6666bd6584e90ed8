"""`Qwen3VL`: the runtime's entry point (load, logits, generate, chat) and the token sampler.

Generation = one prefill over the (left-padded) prompts into a preallocated KV cache, then one decode step
per new token for the whole batch. Decode positions continue each row's 3-D positions through its rope
delta, so a padded row produces the same tokens as the prompt alone.

Tensor parallelism (`tensor_parallel_size=N`, model/parallel.py): this process is rank 0 and drives N-1 worker
processes; `logits()` and `generate()` run on every rank in lockstep, and each sampled token is broadcast from
rank 0 so all ranks extend their KV caches with the same tokens.
"""

from __future__ import annotations

import os
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from model.config import Qwen3VLConfig
from model.constraints import TokenConstraint
from model.parallel import TensorParallel, WorkerPool
from model.rope import mrope_axis_of_slot, mrope_cos_sin, rope_index, text_inv_freq
from model.text import KVCache, TextDecoder, attention_mask_for
from model.vision import VisionEncoder

StreamCallback = Callable[[Tensor], None]   # called with the new token of every row, LongTensor [B]


# --------------------------------------------------------------------------------------------- sampling


@dataclass
class SamplingParams:
    temperature: float = 0.0          # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0                    # 0 = off
    repetition_penalty: float = 1.0   # transformers semantics, over prompt + generated tokens
    presence_penalty: float = 0.0     # OpenAI semantics: subtracted once from every generated token's logit

    def check(self) -> "SamplingParams":
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        return self


def next_tokens(logits: Tensor, params: SamplingParams, seen: Tensor, generated: Tensor,
                generator: torch.Generator | None) -> Tensor:
    """logits [B, V] (fp32) -> token ids [B]. seen/generated [B, V] bool: in prompt or output / in output."""
    if params.repetition_penalty != 1.0:
        penalised = torch.where(logits < 0, logits * params.repetition_penalty, logits / params.repetition_penalty)
        logits = torch.where(seen, penalised, logits)
    if params.presence_penalty != 0.0:
        logits = logits - params.presence_penalty * generated.to(logits.dtype)
    if params.temperature == 0:
        return logits.argmax(-1)
    logits = logits / params.temperature
    if params.top_k > 0:
        kth = torch.topk(logits, min(params.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens ranked above it already reach top_p (always keeps the first)
        drop_sorted = probs.cumsum(-1) - probs >= params.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# ----------------------------------------------------------------------------------------------- model


@dataclass
class Prefill:
    """What decoding needs from the prompt pass."""

    last_logits: Tensor     # [B, V] fp32
    cache: KVCache
    key_valid: Tensor       # [B, capacity] bool, prompt part filled from attention_mask
    padded: bool            # any padding at all (else decode needs no mask)
    next_index: Tensor      # [B] index of the next token within each unpadded row
    rope_deltas: Tensor     # [B]


class Qwen3VL(nn.Module):
    """Qwen3-VL (dense or MoE) for inference. Build with `Qwen3VL.from_pretrained(path_or_repo_id)`."""

    def __init__(self, config: Qwen3VLConfig, source: Path | None = None, tp: TensorParallel = TensorParallel()):
        super().__init__()
        self.config = config
        self.source = source
        self.tp = tp
        self.visual = VisionEncoder(config.vision)          # replicated on every tensor-parallel rank
        self.language_model = TextDecoder(config.text, tp)
        self.lm_head = nn.Linear(config.text.hidden_size, config.text.vocab_size, bias=False)
        t = config.text
        self._inv_freq = text_inv_freq(t.head_dim, t.rope_theta)
        self._slot_axis = mrope_axis_of_slot(t.mrope_section, t.head_dim // 2)
        self._preprocessor = None
        self._workers: WorkerPool | None = None
        self._leave_group: weakref.finalize | None = None
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | Path, dtype: torch.dtype = torch.bfloat16,
                        device: str | torch.device = "cpu",
                        progress: Callable[[int, int], None] | None = None,
                        tensor_parallel_size: int | None = None, quantize: str | None = None) -> "Qwen3VL":
        """Load a checkpoint folder or a Hub id from the local HF cache; progress(done, total) per tensor.

        On CPU the text decoder's linears are packed for oneDNN at load (model/cpu.py; same results, about twice
        the decode speed in bf16). quantize="int8" stores them as int8 with per-row scales instead (CPU only).

        tensor_parallel_size=N > 1 shards the text decoder over N ranks: this process is rank 0 and starts N-1
        worker processes (CPU: gloo; CUDA: NCCL, rank r on cuda:index+r); `close()` (or exit) stops them. Under
        torchrun (WORLD_SIZE > 1 in the environment) each launched process loads its own rank instead."""
        from model.cpu import check_quantize
        from model.loader import resolve_model_path

        device = torch.device(device)
        check_quantize(quantize, device)
        folder = resolve_model_path(path_or_repo_id)
        launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
        n = launched if tensor_parallel_size is None else tensor_parallel_size
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"tensor_parallel_size must be a positive integer, got {tensor_parallel_size!r}")
        if launched > 1:
            if n != launched:
                raise ValueError(f"tensor_parallel_size={n} but this process was launched as one of "
                                 f"WORLD_SIZE={launched} ranks (torchrun); they must agree")
            import torch.distributed as dist

            from model.parallel import init_tensor_parallel, leave_process_group

            rank = int(os.environ.get("RANK", "0"))
            if device.type == "cuda":
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
            created = not dist.is_initialized()
            tp = init_tensor_parallel(device=device)
            model = cls.load_rank(folder, dtype, device, tp, progress if rank == 0 else None, quantize)
            if created:   # the group this model made is left by close() or, at the latest, at interpreter exit
                model._leave_group = weakref.finalize(model, leave_process_group)
            return model
        if n == 1:
            return cls.load_rank(folder, dtype, device, TensorParallel(), progress, quantize)
        return cls._load_with_workers(folder, dtype, device, n, progress, quantize)

    @classmethod
    def load_rank(cls, folder: Path | str, dtype: torch.dtype, device: torch.device, tp: TensorParallel,
                  progress: Callable[[int, int], None] | None = None, quantize: str | None = None) -> "Qwen3VL":
        """This rank's shard of the checkpoint in `folder` (the whole model when tp.world_size == 1)."""
        from model.cpu import pack_for_cpu, packing_supported
        from model.loader import CheckpointReader, load_state, use_fp8_modules

        folder = Path(folder)
        config = Qwen3VLConfig.from_folder(folder)
        reader = CheckpointReader.from_folder(folder, device)
        with torch.device("meta"):
            model = cls(config, source=folder, tp=tp)
        use_fp8_modules(model, config, reader, dtype)
        state = load_state(model, config, reader, dtype, progress, tp)
        model.load_state_dict(state, strict=True, assign=True)
        model.requires_grad_(False)
        model._inv_freq = model._inv_freq.to(device)
        model._slot_axis = model._slot_axis.to(device)
        tied = state["lm_head.weight"] is state["language_model.embed_tokens.weight"]
        del state   # the modules hold the tensors now; packing below then frees each plain weight as it goes
        if tied:
            model.lm_head.weight = model.language_model.embed_tokens.weight   # tied: one parameter
        if quantize is not None or packing_supported(dtype, device):
            pack_for_cpu(model, quantize)
        return model.eval()

    @classmethod
    def _load_with_workers(cls, folder: Path, dtype: torch.dtype, device: torch.device, n: int,
                           progress: Callable[[int, int], None] | None, quantize: str | None) -> "Qwen3VL":
        import torch.distributed as dist

        from model.loader import CheckpointReader, plan_state, use_fp8_modules
        from model.parallel import free_port, collective_timeout_s, init_tensor_parallel

        if device.type == "cuda":
            first = device.index or 0
            if first + n > torch.cuda.device_count():
                raise ValueError(f"tensor_parallel_size={n} from {device} needs GPUs {first}..{first + n - 1}, "
                                 f"but {torch.cuda.device_count()} are visible")
            devices = [torch.device("cuda", first + r) for r in range(n)]
        elif device.type == "cpu":
            devices = [device] * n
        else:
            raise ValueError(f"tensor parallelism runs on cpu or cuda devices, not {device}")
        if dist.is_initialized():
            raise ValueError("this process already belongs to a torch.distributed process group; use torchrun "
                             "(one process per rank) or close() the other tensor-parallel model first")
        # every rank's shard is worked out from tensor shapes first: a checkpoint that cannot be split is refused
        # before any process starts
        config = Qwen3VLConfig.from_folder(folder)
        reader = CheckpointReader.from_folder(folder, torch.device("cpu"))
        for rank in range(n):
            tp = TensorParallel(rank, n)
            with torch.device("meta"):
                shard = cls(config, source=folder, tp=tp)
            use_fp8_modules(shard, config, reader, dtype)
            plan_state(shard, config, reader, tp)
        del reader, shard

        init_method = f"tcp://127.0.0.1:{free_port()}"
        pool = WorkerPool.start(n, dict(folder=str(folder), dtype=str(dtype).removeprefix("torch."),
                                        devices=[str(d) for d in devices], init_method=init_method,
                                        quantize=quantize))
        try:
            tp = init_tensor_parallel(rank=0, world_size=n, init_method=init_method, device=devices[0])
            pool.owns_process_group = True
            model = cls.load_rank(folder, dtype, devices[0], tp, progress, quantize)
            pool.wait(timeout_s=collective_timeout_s())
        except BaseException:
            pool.close()
            raise
        model._workers = pool
        weakref.finalize(model, pool.close)   # also runs at interpreter exit
        return model

    def close(self) -> None:
        """Stop the tensor-parallel worker processes this process started; under torchrun, leave the process group
        that from_pretrained created (every rank calls close). A no-op for a single-process model."""
        if self._workers is not None:
            self._workers.close()
        if self._leave_group is not None:
            self._leave_group()

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the tensor-parallel workers this process started (empty when there are none)."""
        return [] if self._workers is None else self._workers.pids

    def _on_all_ranks(self, method: str, kwargs: dict, local_only: dict | None = None):
        """Run `method(**kwargs)` here and, when this process drives tensor-parallel workers, on every worker."""
        def local():
            return getattr(self, method)(**kwargs, **(local_only or {}))

        if self._workers is None:
            return local()
        return self._workers.run(method, kwargs, local)

    @property
    def preprocessor(self):
        """Tokenizer + chat template + image/video processor of the checkpoint folder (loaded on first use)."""
        if self._preprocessor is None:
            if self.source is None:
                raise ValueError("this model was not loaded from a folder, so it has no preprocessor")
            from model.preprocess import Preprocessor

            self._preprocessor = Preprocessor.from_pretrained(self.source)
        return self._preprocessor

    @property
    def device(self) -> torch.device:
        return self.language_model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.language_model.embed_tokens.weight.dtype

    # ------------------------------------------------------------------ forward pieces

    def embed(self, input_ids: Tensor, pixel_values: Tensor | None, image_grid_thw: Tensor | None,
              pixel_values_videos: Tensor | None, video_grid_thw: Tensor | None
              ) -> tuple[Tensor, Tensor | None, list[Tensor] | None]:
        """Token embeddings with visual features scattered in: h [B, L, H], flat visual indices, DeepStack levels."""
        cfg = self.config
        h = self.language_model.embed_tokens(input_ids)                        # [B, L, H]
        B, L, H = h.shape
        flat_ids = input_ids.reshape(-1)
        visual = torch.zeros_like(flat_ids, dtype=torch.bool)
        features = torch.empty(B * L, H, dtype=h.dtype, device=h.device)
        levels: list[Tensor] | None = None
        for token_id, pixels, grid, what in ((cfg.image_token_id, pixel_values, image_grid_thw, "image"),
                                              (cfg.video_token_id, pixel_values_videos, video_grid_thw, "video")):
            mask = flat_ids == token_id
            n_tokens = int(mask.sum())
            if pixels is None:
                if n_tokens:
                    raise ValueError(f"input_ids contain {n_tokens} {what} tokens but no {what} pixels were given")
                continue
            if grid is None:
                raise ValueError(f"{what} pixels were given without their grid_thw")
            main, deepstack = self.visual(pixels.to(self.device, self.dtype), grid)   # [n, H], levels of [n, H]
            if main.shape[0] != n_tokens:
                raise ValueError(f"{what} features ({main.shape[0]}) and {what} tokens in input_ids ({n_tokens}) "
                                 "do not match")
            features[mask] = main.to(h.dtype)
            visual |= mask
            if levels is None:
                levels = [torch.empty(B * L, H, dtype=h.dtype, device=h.device) for _ in deepstack]
            for level, feat in zip(levels, deepstack):
                level[mask] = feat.to(h.dtype)
        if not bool(visual.any()):
            return h, None, None
        h = torch.where(visual.view(B, L, 1), features.view(B, L, H), h)
        index = visual.nonzero().squeeze(-1)
        return h, index, [level[index] for level in levels]

    def _prompt_pass(self, input_ids: Tensor, attention_mask: Tensor | None, pixel_values, image_grid_thw,
                     pixel_values_videos, video_grid_thw, cache: KVCache | None, all_logits: bool):
        input_ids = input_ids.to(self.device)
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, length], got shape {tuple(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = attention_mask.to(self.device)
        h, visual_index, deepstack = self.embed(input_ids, pixel_values, image_grid_thw, pixel_values_videos,
                                                video_grid_thw)
        position_ids, rope_deltas = rope_index(
            input_ids, attention_mask, image_grid_thw, video_grid_thw, self.config.image_token_id,
            self.config.video_token_id, self.config.vision.spatial_merge_size)          # [3, B, L], [B]
        cos, sin = mrope_cos_sin(position_ids, self._inv_freq, self._slot_axis, h.dtype)
        mask = attention_mask_for(attention_mask.bool(), input_ids.shape[1])
        hidden = self.language_model(h, cos, sin, cache, mask, visual_index, deepstack)   # [B, L, H]
        if not all_logits:  # a 2-D [B, H] input: a [B, 1, H] slice would make matmul copy the whole head
            return self.lm_head(hidden[:, -1]).unsqueeze(1), attention_mask, rope_deltas
        return self.lm_head(hidden), attention_mask, rope_deltas

    def logits(self, input_ids: Tensor, attention_mask: Tensor | None = None, pixel_values: Tensor | None = None,
               image_grid_thw: Tensor | None = None, pixel_values_videos: Tensor | None = None,
               video_grid_thw: Tensor | None = None, mm_token_type_ids: Tensor | None = None) -> Tensor:
        """Logits of every position [B, L, vocab] (same inputs as transformers' processor returns;
        mm_token_type_ids is accepted for that reason and not needed: types follow from input_ids)."""
        return self._on_all_ranks("_logits", dict(
            input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
            image_grid_thw=image_grid_thw, pixel_values_videos=pixel_values_videos, video_grid_thw=video_grid_thw))

    @torch.inference_mode()
    def _logits(self, input_ids: Tensor, attention_mask: Tensor | None, pixel_values: Tensor | None,
                image_grid_thw: Tensor | None, pixel_values_videos: Tensor | None,
                video_grid_thw: Tensor | None) -> Tensor:
        logits, _, _ = self._prompt_pass(input_ids, attention_mask, pixel_values, image_grid_thw,
                                         pixel_values_videos, video_grid_thw, cache=None, all_logits=True)
        return logits

    def prefill(self, input_ids: Tensor, attention_mask: Tensor | None, pixel_values, image_grid_thw,
                pixel_values_videos, video_grid_thw, capacity: int) -> Prefill:
        B, L = input_ids.shape
        t = self.config.text
        n_kv_heads = self.language_model.layers[0].self_attn.num_kv_heads     # this rank's kv heads
        cache = KVCache.allocate(t.num_hidden_layers, B, n_kv_heads, capacity, t.head_dim, self.dtype, self.device)
        logits, attention_mask, rope_deltas = self._prompt_pass(
            input_ids, attention_mask, pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw,
            cache, all_logits=False)
        key_valid = torch.ones(B, capacity, dtype=torch.bool, device=self.device)
        key_valid[:, :L] = attention_mask.bool()
        padded = not bool(attention_mask.bool().all())
        return Prefill(logits[:, -1].float(), cache, key_valid, padded, attention_mask.sum(1), rope_deltas)

    def decode_step(self, tokens: Tensor, state: Prefill) -> Tensor:
        """One new token per row: tokens [B] -> next-token logits [B, V] (fp32); advances the cache."""
        position = (state.next_index + state.rope_deltas).view(1, -1, 1).expand(3, -1, 1)   # [3, B, 1]
        h = self.language_model.embed_tokens(tokens[:, None])                               # [B, 1, H]
        cos, sin = mrope_cos_sin(position, self._inv_freq, self._slot_axis, h.dtype)
        end = state.cache.length + 1
        mask = attention_mask_for(state.key_valid[:, :end], 1) if state.padded else None
        hidden = self.language_model(h, cos, sin, state.cache, mask)
        state.next_index = state.next_index + 1
        return self.lm_head(hidden[:, -1]).float()

    # ------------------------------------------------------------------ generation

    def generate(self, input_ids: Tensor, attention_mask: Tensor | None = None, pixel_values: Tensor | None = None,
                 image_grid_thw: Tensor | None = None, pixel_values_videos: Tensor | None = None,
                 video_grid_thw: Tensor | None = None, max_new_tokens: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, top_k: int = 0, repetition_penalty: float = 1.0,
                 presence_penalty: float = 0.0, seed: int | None = None, stream: StreamCallback | None = None,
                 eos_token_ids: list[int] | None = None, mm_token_type_ids: Tensor | None = None,
                 constraints: list[TokenConstraint | None] | None = None) -> Tensor:
        """New token ids [B, T] (T <= max_new_tokens); rows that stopped early are filled with the pad id.

        Stops a row at any of `eos_token_ids` (default: the checkpoint's generation_config.json); the eos
        token itself is returned. `stream(tokens [B])` is called after every step. `constraints[b]` (see
        model/constraints.py) masks row b's logits before each sampling step and is told the chosen token;
        None leaves a row free. Constraints live on rank 0, whose tokens every rank uses."""
        kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                      image_grid_thw=image_grid_thw, pixel_values_videos=pixel_values_videos,
                      video_grid_thw=video_grid_thw, max_new_tokens=max_new_tokens, temperature=temperature,
                      top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty,
                      presence_penalty=presence_penalty, seed=seed, eos_token_ids=eos_token_ids)
        if constraints is not None and len(constraints) != input_ids.shape[0]:
            raise ValueError(f"constraints must have one entry per row ({input_ids.shape[0]}), got {len(constraints)}")
        return self._on_all_ranks("_generate", kwargs, local_only=dict(stream=stream, constraints=constraints))

    @torch.inference_mode()
    def _generate(self, input_ids: Tensor, attention_mask: Tensor | None, pixel_values: Tensor | None,
                  image_grid_thw: Tensor | None, pixel_values_videos: Tensor | None, video_grid_thw: Tensor | None,
                  max_new_tokens: int, temperature: float, top_p: float, top_k: int, repetition_penalty: float,
                  presence_penalty: float, seed: int | None, eos_token_ids: list[int] | None,
                  stream: StreamCallback | None = None,
                  constraints: list[TokenConstraint | None] | None = None) -> Tensor:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        params = SamplingParams(temperature, top_p, top_k, repetition_penalty, presence_penalty).check()
        eos = torch.tensor(list(eos_token_ids if eos_token_ids is not None else self.eos_token_ids),
                           dtype=torch.long, device=self.device)
        pad_id = self.config.pad_token_id
        generator = None
        if seed is not None and temperature > 0:
            generator = torch.Generator(device=self.device).manual_seed(seed)

        B, L = input_ids.shape
        t0 = time.perf_counter()
        state = self.prefill(input_ids, attention_mask, pixel_values, image_grid_thw, pixel_values_videos,
                             video_grid_thw, capacity=L + max_new_tokens)
        V = state.last_logits.shape[-1]
        seen = torch.zeros(B, V, dtype=torch.bool, device=self.device)
        generated = torch.zeros(B, V, dtype=torch.bool, device=self.device)
        if params.repetition_penalty != 1.0:
            rows, cols = state.key_valid[:, :L].nonzero(as_tuple=True)
            seen[rows, input_ids.to(self.device)[rows, cols]] = True
        out = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=self.device)
        done = torch.zeros(B, dtype=torch.bool, device=self.device)
        logits = state.last_logits
        self._sync()
        t1 = time.perf_counter()
        steps = 0
        rows = [] if constraints is None else [(b, c) for b, c in enumerate(constraints) if c is not None]
        for step in range(max_new_tokens):
            for b, c in rows:
                if not done[b]:
                    c.mask_logits(logits[b])
            token = self.tp.broadcast(next_tokens(logits, params, seen, generated, generator))   # rank 0's choice
            token = torch.where(done, torch.full_like(token, pad_id), token)
            for b, c in rows:
                if not done[b]:
                    c.advance(int(token[b]))
            out[:, step] = token
            steps = step + 1
            if stream is not None:
                stream(token)
            if params.repetition_penalty != 1.0 or params.presence_penalty != 0.0:
                live = ~done
                seen[live, token[live]] = True
                generated[live, token[live]] = True
            done = done | torch.isin(token, eos)
            if step + 1 == max_new_tokens or bool(done.all()):
                break
            logits = self.decode_step(token, state)
        self._sync()
        t2 = time.perf_counter()
        self.timings = {"prefill_s": t1 - t0, "decode_s": t2 - t1, "prompt_tokens": B * L,
                        "new_tokens": steps, "decode_steps": max(steps - 1, 0)}
        return out[:, :steps]

    @property
    def eos_token_ids(self) -> list[int]:
        if self.config.eos_token_ids:
            return list(self.config.eos_token_ids)
        return list(self.preprocessor.eos_token_ids)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def chat(self, messages: list[dict], max_new_tokens: int = 256, tools: list[dict] | None = None,
             **sampling) -> str:
        """Answer one conversation (OpenAI/Qwen message format, images and videos included) as text."""
        inputs = self.preprocessor(messages, add_generation_prompt=True, tools=tools)
        new_ids = self.generate(**_model_inputs(inputs), max_new_tokens=max_new_tokens, **sampling)
        ids = [i for i in new_ids[0].tolist() if i not in self.eos_token_ids and i != self.config.pad_token_id]
        return self.preprocessor.decode(ids)


MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "pixel_values_videos",
                "video_grid_thw")


def _model_inputs(inputs: dict) -> dict:
    return {k: inputs[k] for k in MODEL_INPUTS if inputs.get(k) is not None}
