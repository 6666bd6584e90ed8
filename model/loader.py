"""Find a Qwen3-VL checkpoint (local folder or Hub id in the local Hugging Face cache) and load its
safetensors (single file or sharded with model.safetensors.index.json) into the runtime's modules.

Checkpoint names map onto module names by prefix (`model.visual.` -> `visual.`, `model.language_model.` ->
`language_model.`); the only reshapes are the patch-embedding Conv3d (a matmul here) and MoE experts
(any on-disk layout, through model.moe.load_expert_weights).

FP8 checkpoints (quantization_config quant_method "fp8" with weight_block_size): every linear whose checkpoint
weight is float8_e4m3fn becomes a `model.quant.Fp8Linear` (MoE experts a `model.quant.Fp8Experts`) before
loading, so weights stay FP8 in memory next to float32 `weight_scale_inv`; everything else loads in `dtype`.

Tensor parallelism: each rank reads only its slice of a sharded tensor (safetensors `get_slice`) and only its
experts; `plan_state` works out every rank's slices from tensor shapes alone, so a checkpoint that cannot be
split is refused before any weight is read or any worker started.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from model.config import Qwen3VLConfig
from model.parallel import TensorParallel, is_row_parallel_bias, text_param_shard
from model.quant import BLOCK, FP8_DTYPE

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
OTHER_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PATCH_EMBED = "visual.patch_embed.proj.weight"
PREFIXES = (("model.visual.", "visual."), ("model.language_model.", "language_model."), ("lm_head.", "lm_head."))


def resolve_model_path(path_or_repo_id: str | Path, what: str = "model") -> Path:
    """A local folder as is; otherwise a Hub repo id looked up in the local HF cache only (no downloads).
    `what` names the folder in errors ("model", "checkpoint")."""
    path = Path(path_or_repo_id).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NotADirectoryError(f"{path}: not a folder (give the {what} folder that holds config.json)")
        return path
    name = str(path_or_repo_id)
    if not REPO_ID.match(name):
        raise FileNotFoundError(f"{name}: no such {what} folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        raise FileNotFoundError(
            f"{name}: not a local folder, and this model is not in the local Hugging Face cache; "
            f"get it with `qvl-agent download {name}` (or pass the path of a model folder)") from None


def safetensors_files(folder: Path) -> list[Path]:
    """The checkpoint's weight files; every shard named in the index must exist."""
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{index}: not a valid safetensors index ({e})") from None
        files = [folder / name for name in dict.fromkeys(weight_map.values())]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{folder}: missing shard(s) {', '.join(missing)} listed in {INDEX_FILE}")
        return files
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE]
    found = sorted(folder.glob("*.safetensors"))
    if found:
        return found
    others = sorted(p.name for p in folder.iterdir() if p.suffix in OTHER_WEIGHT_SUFFIXES)
    if others:
        raise ValueError(f"{folder}: found {', '.join(others)}; only safetensors checkpoints are supported")
    raise FileNotFoundError(f"{folder}: no weights ({SINGLE_FILE} or {INDEX_FILE}) in the model folder")


class CheckpointReader:
    """Lazy name -> tensor access over all shards (tensors are read only when asked for)."""

    def __init__(self, files: list[Path], device: torch.device):
        from safetensors import safe_open

        self.device = device
        self.handles = []
        self.where: dict[str, int] = {}
        for f in files:
            try:
                handle = safe_open(str(f), framework="pt", device=str(device))
                names = list(handle.keys())
            except Exception as e:  # safetensors raises its own error types for truncated/garbled headers
                raise ValueError(f"{f}: not a valid safetensors file ({type(e).__name__}: {e})") from None
            for name in names:
                self.where[name] = len(self.handles)
            self.handles.append((f, handle))

    @classmethod
    def from_folder(cls, folder: Path, device: torch.device) -> "CheckpointReader":
        """Every shard of the checkpoint in `folder`; an index that names a tensor its shard lacks is refused."""
        files = safetensors_files(folder)
        reader = cls(files, device)
        index = folder / INDEX_FILE
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            misplaced = sorted(n for n, f in weight_map.items()
                               if n not in reader.where or reader.handles[reader.where[n]][0].name != f)
            if misplaced:
                raise ValueError(f"{index} lists tensors that are not in their shard: {', '.join(misplaced[:3])}")
        return reader

    def names(self) -> set[str]:
        return set(self.where)

    def shape(self, name: str) -> tuple[int, ...]:
        f, handle = self.handles[self.where[name]]
        return tuple(handle.get_slice(name).get_shape())

    def dtype(self, name: str) -> str:
        """safetensors dtype code: F32, BF16, F8_E4M3, ..."""
        f, handle = self.handles[self.where[name]]
        return handle.get_slice(name).get_dtype()

    def get(self, name: str, index: slice | tuple[slice, ...] | None = None) -> Tensor:
        """The whole tensor, or only `index` of it (read from disk without loading the rest)."""
        f, handle = self.handles[self.where[name]]
        try:
            return handle.get_tensor(name) if index is None else handle.get_slice(name)[index]
        except Exception as e:
            raise ValueError(f"{f}: cannot read tensor {name} ({type(e).__name__}: {e})") from None


def module_name(checkpoint_name: str) -> str | None:
    for ckpt_prefix, mod_prefix in PREFIXES:
        if checkpoint_name.startswith(ckpt_prefix):
            return mod_prefix + checkpoint_name[len(ckpt_prefix):]
    return None


def checkpoint_name(module_name: str) -> str:
    for ckpt_prefix, mod_prefix in PREFIXES:
        if module_name.startswith(mod_prefix):
            return ckpt_prefix + module_name[len(mod_prefix):]
    return module_name


FP8_CODE = "F8_E4M3"


def use_fp8_modules(model: nn.Module, config: Qwen3VLConfig, reader: CheckpointReader, dtype: torch.dtype) -> int:
    """Swap (meta) nn.Linear / Experts for Fp8Linear / Fp8Experts where the checkpoint's weights are FP8.

    Returns the number of modules swapped. The checkpoint decides which modules are quantized (a float8 weight
    with its weight_scale_inv), as quantization_config.modules_to_not_convert lists only the ones that are not."""
    from model.moe import Experts, _detect_layout
    from model.quant import Fp8Experts, Fp8Linear

    names = reader.names()
    float8 = sorted(n for n in names if reader.dtype(n).startswith("F8"))
    if not float8:
        return 0
    other = [n for n in float8 if reader.dtype(n) != FP8_CODE]
    if other:
        raise ValueError(f"{other[0]}: float8 format {reader.dtype(other[0])} is not supported (e4m3 only)")
    if config.quantization is None:
        raise ValueError(f"the checkpoint holds float8 weights (e.g. {float8[0]}) but config.json has no "
                         "quantization_config")
    block = config.quantization.weight_block_size
    swapped = 0
    for name, module in list(model.named_modules()):
        replacement = None
        if isinstance(module, nn.Linear):
            weight = checkpoint_name(f"{name}.weight")
            if weight in names and reader.dtype(weight) == FP8_CODE:
                if f"{weight}_scale_inv" not in names:
                    raise ValueError(f"{weight} is float8 but {weight}_scale_inv is missing from the checkpoint")
                replacement = Fp8Linear(module.in_features, module.out_features, bias=module.bias is not None,
                                        block=block, device="meta", bias_dtype=dtype)
        elif isinstance(module, Experts):
            if _detect_layout(names, checkpoint_name(f"{name}."), config.text.num_experts)[1]:
                replacement = Fp8Experts(module.num_experts, module.hidden_size, module.intermediate_size, block,
                                         device="meta")
        if replacement is not None:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, replacement)
            swapped += 1
    return swapped


# what fills one parameter: (checkpoint tensor, index into it or None for all of it), or None for zeros
# (a row-parallel bias on ranks > 0)
Read = tuple[str, tuple[slice, ...] | None] | None


def plan_state(model: nn.Module, config: Qwen3VLConfig, reader: CheckpointReader,
               tp: TensorParallel = TensorParallel()) -> dict[str, Read]:
    """Where every parameter of `model` (except MoE experts and a tied head) comes from, for rank tp.rank.

    Reads tensor shapes only. Raises ValueError for missing tensors, wrong full shapes and shards that cut FP8
    blocks (naming the tensor and the sizes)."""
    names = reader.names()
    block = config.quantization.weight_block_size if config.quantization else BLOCK
    plan: dict[str, Read] = {}
    missing = []
    for name, param in model.state_dict(keep_vars=True).items():
        if ".mlp.experts." in name or (name == "lm_head.weight" and config.tie_word_embeddings
                                       and checkpoint_name(name) not in names):
            continue
        ckpt = checkpoint_name(name)
        if ckpt not in names:
            missing.append(name)
            continue
        is_scale = name.endswith("weight_scale_inv")
        weight = ckpt.removesuffix("_scale_inv")
        shard = text_param_shard(name.removesuffix("_scale_inv"), config.text, tp.rank, tp.world_size)
        if shard is not None:
            full = reader.shape(weight)
            if shard.dim >= len(full) or shard.stop > full[shard.dim]:
                raise ValueError(f"checkpoint tensor {weight} has shape {full}; rank {tp.rank} of {tp.world_size} "
                                 f"needs {'rows' if shard.dim == 0 else 'columns'} {shard.start}:{shard.stop} "
                                 "(sizes from config.json)")
            if reader.dtype(weight) == FP8_CODE:
                grid = shard.of_scale_grid(full[shard.dim], block, weight, tp.rank, tp.world_size)
                shard = grid if is_scale else shard
        if is_row_parallel_bias(name) and tp.rank > 0:
            plan[name] = None
        else:
            plan[name] = (ckpt, None if shard is None else shard.index())
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"checkpoint is missing {len(missing)} tensor(s) required by config.json: {shown}")
    return plan


def load_state(model: nn.Module, config: Qwen3VLConfig, reader: CheckpointReader, dtype: torch.dtype,
               progress: Callable[[int, int], None] | None = None,
               tp: TensorParallel = TensorParallel()) -> dict[str, Tensor]:
    """Build the complete state dict for `model` (rank tp.rank's shard; floats in `dtype`, FP8 weights as they are,
    scales in float32) from the checkpoint; raises ValueError on missing or mis-shaped tensors."""
    from model.moe import SparseMoeBlock, load_expert_weights, load_fp8_expert_weights
    from model.quant import Fp8Experts

    wanted = dict(model.state_dict(keep_vars=True))
    plan = plan_state(model, config, reader, tp)
    names = reader.names()
    block = config.quantization.weight_block_size if config.quantization else BLOCK
    state: dict[str, Tensor] = {}

    def put(name: str, tensor: Tensor) -> None:
        target = wanted[name]
        # the one reshape: the patch embedding's Conv3d kernel [D, C, t, p, p] is a [D, C*t*p*p] matmul here
        reshapable = name == PATCH_EMBED and tensor.numel() == target.numel()
        if tuple(tensor.shape) != tuple(target.shape) and not reshapable:
            raise ValueError(f"checkpoint tensor for {name} has shape {tuple(tensor.shape)}, "
                             f"expected {tuple(target.shape)} from config.json")
        if target.dtype == FP8_DTYPE:
            if tensor.dtype != FP8_DTYPE:
                raise ValueError(f"{checkpoint_name(name)}: expected float8_e4m3fn, got {tensor.dtype}")
        elif name.endswith("scale_inv"):
            tensor = tensor.to(torch.float32)  # bf16 on disk in some releases
        elif tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[name] = tensor.reshape(target.shape)

    moe_layers = [(name, m) for name, m in model.named_modules() if isinstance(m, SparseMoeBlock)]
    total = len(plan) + len(moe_layers)
    for i, (name, read) in enumerate(sorted(plan.items())):
        if read is None:
            put(name, torch.zeros(wanted[name].shape, dtype=dtype, device=reader.device))
        else:
            put(name, reader.get(*read))
        if progress:
            progress(i + 1, total)

    t = config.text
    for j, (name, block_module) in enumerate(moe_layers):
        prefix = checkpoint_name(f"{name}.experts.")
        if isinstance(block_module.experts, Fp8Experts):
            experts = load_fp8_expert_weights(reader.get, names, prefix, t.num_experts, t.hidden_size,
                                              t.moe_intermediate_size, block, experts=block_module.local)
        else:
            experts = load_expert_weights(reader.get, names, prefix, t.num_experts, t.hidden_size,
                                          t.moe_intermediate_size, experts=block_module.local)
        for key, tensor in experts.items():
            put(f"{name}.experts.{key}", tensor)
        if progress:
            progress(len(plan) + j + 1, total)

    lm_head = "lm_head.weight"
    if lm_head not in state and config.tie_word_embeddings:
        # tied: the head is the embedding matrix (a checkpoint that still stores lm_head.weight keeps it)
        state[lm_head] = state.get("language_model.embed_tokens.weight")
    missing = [n for n in wanted if state.get(n) is None]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"checkpoint is missing {len(missing)} tensor(s) required by config.json: {shown}")
    return state
