"""Find a Qwen3-VL checkpoint (local folder or Hub id in the local Hugging Face cache) and load its
safetensors (single file or sharded with model.safetensors.index.json) into the runtime's modules.

Checkpoint names map onto module names by prefix (`model.visual.` -> `visual.`, `model.language_model.` ->
`language_model.`); the only reshapes are the patch-embedding Conv3d (a matmul here) and MoE experts
(any on-disk layout, through model.moe.load_expert_weights).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from model.config import Qwen3VLConfig

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PATCH_EMBED = "visual.patch_embed.proj.weight"
PREFIXES = (("model.visual.", "visual."), ("model.language_model.", "language_model."), ("lm_head.", "lm_head."))


def resolve_model_path(path_or_repo_id: str | Path) -> Path:
    """A local folder as is; otherwise a Hub repo id looked up in the local HF cache only (no downloads)."""
    path = Path(path_or_repo_id).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NotADirectoryError(f"{path}: not a folder (give the model folder that holds config.json)")
        return path
    name = str(path_or_repo_id)
    if not REPO_ID.match(name):
        raise FileNotFoundError(f"{name}: no such model folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        raise FileNotFoundError(
            f"{name}: not a local folder, and this model is not in the local Hugging Face cache; "
            f"get it with `huggingface-cli download {name}` (or pass the path of a model folder)") from None


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
    raise FileNotFoundError(f"{folder}: no weights ({SINGLE_FILE} or {INDEX_FILE}) in the model folder")


class CheckpointReader:
    """Lazy name -> tensor access over all shards (tensors are read only when asked for)."""

    def __init__(self, files: list[Path], device: torch.device):
        from safetensors import safe_open

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

    def names(self) -> set[str]:
        return set(self.where)

    def get(self, name: str) -> Tensor:
        f, handle = self.handles[self.where[name]]
        try:
            return handle.get_tensor(name)
        except Exception as e:
            raise ValueError(f"{f}: cannot read tensor {name} ({type(e).__name__}: {e})") from None


def module_name(checkpoint_name: str) -> str | None:
    for ckpt_prefix, mod_prefix in PREFIXES:
        if checkpoint_name.startswith(ckpt_prefix):
            return mod_prefix + checkpoint_name[len(ckpt_prefix):]
    return None


def load_state(model: torch.nn.Module, config: Qwen3VLConfig, reader: CheckpointReader,
               dtype: torch.dtype, progress: Callable[[int, int], None] | None = None) -> dict[str, Tensor]:
    """Build the complete state dict for `model` (in `dtype`) from the checkpoint; raises on missing tensors."""
    wanted = dict(model.state_dict(keep_vars=True))
    available = reader.names()
    state: dict[str, Tensor] = {}

    def put(name: str, tensor: Tensor) -> None:
        target = wanted[name]
        # the one reshape: the patch embedding's Conv3d kernel [D, C, t, p, p] is a [D, C*t*p*p] matmul here
        reshapable = name == PATCH_EMBED and tensor.numel() == target.numel()
        if tuple(tensor.shape) != tuple(target.shape) and not reshapable:
            raise ValueError(f"checkpoint tensor for {name} has shape {tuple(tensor.shape)}, "
                             f"expected {tuple(target.shape)} from config.json")
        state[name] = tensor.reshape(target.shape).to(dtype if tensor.is_floating_point() else tensor.dtype)

    plain = [(n, module_name(n)) for n in sorted(available)]
    plain = [(n, m) for n, m in plain if m is not None and m in wanted and ".mlp.experts." not in n]
    for i, (ckpt_name, mod_name) in enumerate(plain):
        put(mod_name, reader.get(ckpt_name))
        if progress:
            progress(i + 1, len(plain))

    if config.is_moe:
        from model.moe import load_expert_weights

        t = config.text
        for layer in range(t.num_hidden_layers):
            if not t.is_moe_layer(layer):
                continue
            prefix = f"model.language_model.layers.{layer}.mlp.experts."
            experts = load_expert_weights(reader.get, available, prefix, t.num_experts, t.hidden_size,
                                          t.moe_intermediate_size)
            for key, tensor in experts.items():
                put(f"language_model.layers.{layer}.mlp.experts.{key}", tensor)

    lm_head = "lm_head.weight"
    if lm_head not in state and config.tie_word_embeddings:
        # tied: the head is the embedding matrix (a checkpoint that still stores lm_head.weight keeps it)
        state[lm_head] = state.get("language_model.embed_tokens.weight")
    missing = [n for n in wanted if state.get(n) is None]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"checkpoint is missing {len(missing)} tensor(s) required by config.json: {shown}")
    return state
