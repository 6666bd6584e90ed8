"""`qvl-agent quantize SRC DST --fp8`: write an FP8 checkpoint in the format of the official Qwen3-VL `-FP8` releases.

Quantized (e4m3, one float32 `weight_scale_inv` per 128x128 block, partial edge blocks allowed): the text decoder's
q/k/v/o projections, dense gate/up/down projections and every MoE expert's gate/up/down projection. Experts are
written per expert (`mlp.experts.{e}.gate_proj.weight` + `.weight_scale_inv`), the layout of Qwen's FP8 MoE
releases and vLLM's block-FP8 MoE loader, whatever layout SRC uses. Kept in bfloat16: the vision tower (mergers,
DeepStack mergers, patch/pos embeddings), embed_tokens, lm_head, every norm and the MoE routers (`mlp.gate`); they
are listed in `quantization_config.modules_to_not_convert`.

Tensors are streamed from SRC's safetensors one at a time (one MoE layer's experts at a time) and written shard by
shard into a temporary folder next to DST, renamed to DST only when complete.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from model.loader import INDEX_FILE, OTHER_WEIGHT_SUFFIXES, CheckpointReader, resolve_model_path
from model.moe import load_expert_weights
from model.quant import BLOCK, FP8_DTYPE, dequantize_fp8_block, quantize_fp8_block, scale_grid_shape

SUPPORTED_MODEL_TYPES = ("qwen3_vl", "qwen3_vl_moe")
FLOAT_DTYPES = {"F32": 4, "BF16": 2, "F16": 2}
# the text decoder's linear weights; everything else in a Qwen3-VL checkpoint stays in bf16
QUANTIZED_LINEAR = re.compile(
    r"^model\.language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$")
EXPERTS = re.compile(r"^(model\.language_model\.layers\.(\d+)\.mlp\.experts\.)")


def quantization_config(modules_to_not_convert: list[str]) -> dict:
    return {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
            "weight_block_size": list(BLOCK), "modules_to_not_convert": modules_to_not_convert}


# ----------------------------------------------------------------------------------------------------------
# planning: every output tensor group with its size, before anything is read


@dataclass
class Item:
    kind: str            # "copy" | "linear" | "experts"
    name: str            # tensor name, or the experts prefix
    nbytes: int          # bytes it takes in DST
    bf16_linear_bytes: int = 0  # the same quantized weights in bf16 (for the memory report)


def plan(source: CheckpointReader, text_config: dict) -> list[Item]:
    items: list[Item] = []
    expert_layers: dict[str, list[str]] = {}
    for name in sorted(source.names()):
        dtype, shape = source.dtype(name), source.shape(name)
        numel = math.prod(shape)
        if dtype.startswith("F8") or (dtype in ("I8", "U8") and name.endswith(".weight")):
            raise ValueError(f"{name} has dtype {dtype}: the checkpoint is already quantized")
        experts = EXPERTS.match(name)
        if experts:
            _check_float(name, dtype)
            expert_layers.setdefault(experts.group(1), []).append(name)
        elif QUANTIZED_LINEAR.match(name):
            _check_float(name, dtype)
            if len(shape) != 2:
                raise ValueError(f"{name}: expected a 2-D linear weight, got shape {shape}")
            items.append(Item("linear", name, numel + 4 * math.prod(scale_grid_shape(*shape)), 2 * numel))
        else:
            items.append(Item("copy", name, 2 * numel if dtype in FLOAT_DTYPES else numel * _itemsize(dtype)))
    if expert_layers:
        e, h, i = moe_shape(text_config)
        per_expert = 3 * i * h + 4 * (2 * math.prod(scale_grid_shape(i, h)) + math.prod(scale_grid_shape(h, i)))
        for prefix in expert_layers:
            items.append(Item("experts", prefix, e * per_expert, e * 3 * i * h * 2))
    if not any(it.kind != "copy" for it in items):
        raise ValueError("no text-decoder linear weights found to quantize (expected names like "
                         "model.language_model.layers.0.self_attn.q_proj.weight)")
    return items


def moe_shape(text_config: dict) -> tuple[int, int, int]:
    """(num_experts, hidden_size, moe_intermediate_size) from text_config."""
    # transformers >= 5 writes `num_local_experts`; the Hub configs say `num_experts`
    e = text_config.get("num_experts") or text_config.get("num_local_experts")
    h, i = text_config.get("hidden_size"), text_config.get("moe_intermediate_size")
    if not (e and h and i):
        raise ValueError("the checkpoint has MoE expert weights but config.json text_config lacks "
                         "num_experts/hidden_size/moe_intermediate_size")
    return e, h, i


def _check_float(name: str, dtype: str) -> None:
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} has dtype {dtype}; only float32, bfloat16 and float16 weights can be quantized")


def _itemsize(dtype: str) -> int:
    sizes = {"F64": 8, "I64": 8, "U64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2, "BOOL": 1, "I8": 1, "U8": 1}
    if dtype not in sizes:
        raise ValueError(f"unsupported tensor dtype {dtype} in the checkpoint")
    return sizes[dtype]


def shard(items: list[Item], max_bytes: int) -> list[list[Item]]:
    shards: list[list[Item]] = [[]]
    size = 0
    for it in items:
        if shards[-1] and size + it.nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(it)
        size += it.nbytes
    return shards


# ----------------------------------------------------------------------------------------------------------
# producing tensors


def produce(item: Item, source: CheckpointReader, text_config: dict) -> dict[str, torch.Tensor]:
    if item.kind == "copy":
        t = source.get(item.name)
        return {item.name: t.to(torch.bfloat16) if t.is_floating_point() else t}
    if item.kind == "linear":
        q, s = quantize_fp8_block(source.get(item.name))
        return {item.name: q, item.name.removesuffix("weight") + "weight_scale_inv": s}
    e, h, i = moe_shape(text_config)
    w = load_expert_weights(source.get, source.names(), item.name, e, h, i)  # [E, 2I, H], [E, H, I]
    out = {}
    for x in range(e):  # expert by expert: float32 temporaries stay the size of one expert
        for proj, t in (("gate_proj", w["gate_up_proj"][x, :i]), ("up_proj", w["gate_up_proj"][x, i:]),
                        ("down_proj", w["down_proj"][x])):
            out[f"{item.name}{x}.{proj}.weight"], out[f"{item.name}{x}.{proj}.weight_scale_inv"] = quantize_fp8_block(t)
    return out


def output_config(config: dict, modules_to_not_convert: list[str]) -> dict:
    config = json.loads(json.dumps(config))
    for section in (config, config.get("text_config"), config.get("vision_config")):
        if isinstance(section, dict):
            for key in ("torch_dtype", "dtype"):
                if key in section:
                    section[key] = "bfloat16"
    if "torch_dtype" not in config:
        config["dtype"] = "bfloat16"
    config["quantization_config"] = quantization_config(modules_to_not_convert)
    return config


def dequantize_state(tensors: dict[str, torch.Tensor], dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """FP8 checkpoint tensors -> `dtype` tensors in the layout transformers saves (per-expert weights fused into
    gate_up_proj [E, 2I, H] / down_proj [E, H, I]). The reference side of FP8 parity checks: transformers cannot
    load per-expert FP8 MoE checkpoints itself."""
    out, experts = {}, {}
    for n, t in tensors.items():
        if n.endswith("weight_scale_inv"):
            continue
        if t.dtype == FP8_DTYPE:
            t = dequantize_fp8_block(t, tensors[n + "_scale_inv"], dtype)
        if ".mlp.experts." in n:
            prefix, rest = n.split(".mlp.experts.")
            e, proj = rest.split(".")[:2]
            experts.setdefault(prefix, {}).setdefault(proj, {})[int(e)] = t
        else:
            out[n] = t
    for prefix, projs in experts.items():
        stack = {p: torch.stack([projs[p][e] for e in sorted(projs[p])]) for p in projs}
        out[f"{prefix}.mlp.experts.gate_up_proj"] = torch.cat([stack["gate_proj"], stack["up_proj"]], 1)
        out[f"{prefix}.mlp.experts.down_proj"] = stack["down_proj"]
    return out


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"--max-shard-size {text!r}: expected e.g. 4GB, 500MB or a byte count")
    unit = (m.group(2) or "B").upper()
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}[unit]
    size = int(float(m.group(1)) * scale)
    if size <= 0:
        raise ValueError(f"--max-shard-size must be positive, got {text!r}")
    return size


# ----------------------------------------------------------------------------------------------------------
# the command


def quantize_checkpoint(src: str, dst: str, max_shard_bytes: int = 4 * 10**9, log=print) -> dict:
    """Write the FP8 copy of SRC to DST. Returns a summary (shards, bytes, memory ratio of the quantized linears)."""
    t0 = time.time()
    src_dir = resolve_model_path(src, what="checkpoint")
    config_path = src_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{src_dir} has no config.json")
    config = json.loads(config_path.read_text())
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "?")
        raise ValueError(f"{src} is already quantized (quantization_config.quant_method = {method!r})")
    if config.get("model_type") not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{src}: model_type {config.get('model_type')!r} is not a Qwen3-VL checkpoint "
                         f"(expected one of {', '.join(SUPPORTED_MODEL_TYPES)})")
    dst_dir = Path(dst).expanduser()
    if dst_dir.exists() and (not dst_dir.is_dir() or any(dst_dir.iterdir())):
        raise ValueError(f"{dst} already exists and is not an empty folder; choose another DST or remove it")
    if dst_dir.resolve() == src_dir.resolve():
        raise ValueError("DST must differ from SRC")
    text_config = config.get("text_config", config)

    source = CheckpointReader.from_folder(src_dir, torch.device("cpu"))
    items = plan(source, text_config)
    shards = shard(items, max_shard_bytes)
    # every module left in bf16; lm_head always (tied checkpoints have none, but loaders must not quantize it)
    modules_to_not_convert = sorted({it.name.rsplit(".", 1)[0] for it in items if it.kind == "copy"} | {"lm_head"})
    n_linear = sum(it.kind == "linear" for it in items)
    n_experts = sum(it.kind == "experts" for it in items)
    log(f"quantizing {n_linear} linear weights" + (f" and {n_experts} MoE expert layers" if n_experts else "")
        + f" of {src_dir} to FP8 in {len(shards)} shard(s)")

    tmp = dst_dir.parent / f".{dst_dir.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        weight_map: dict[str, str] = {}
        total = 0
        fp8_bytes = 0
        for n, group in enumerate(shards, 1):
            file = f"model-{n:05d}-of-{len(shards):05d}.safetensors" if len(shards) > 1 else "model.safetensors"
            tensors: dict[str, torch.Tensor] = {}
            for it in group:
                produced = produce(it, source, text_config)
                if it.kind != "copy":
                    fp8_bytes += sum(t.numel() * t.element_size() for t in produced.values())
                tensors.update(produced)
            save_file(tensors, str(tmp / file), metadata={"format": "pt"})
            size = sum(t.numel() * t.element_size() for t in tensors.values())
            total += size
            weight_map.update(dict.fromkeys(tensors, file))
            log(f"[{n}/{len(shards)}] {file}: {len(tensors)} tensors, {size / 1e6:.1f} MB ({time.time() - t0:.0f}s)")
            del tensors
        if len(shards) > 1:
            index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
            (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
        (tmp / "config.json").write_text(json.dumps(output_config(config, modules_to_not_convert), indent=2) + "\n")
        copied = []
        for f in sorted(src_dir.iterdir()):  # tokenizer, processor, chat template, generation config, README ...
            if (f.is_file() and not f.name.startswith(".") and f.name not in ("config.json", INDEX_FILE)
                    and not f.name.endswith((".safetensors", *OTHER_WEIGHT_SUFFIXES))):
                shutil.copy2(f, tmp / f.name)
                copied.append(f.name)
        if dst_dir.exists():
            dst_dir.rmdir()
        tmp.rename(dst_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bf16_bytes = sum(it.bf16_linear_bytes for it in items)
    summary = {"dst": str(dst_dir), "shards": len(shards), "total_bytes": total, "copied_files": copied,
               "quantized_linear_bytes": fp8_bytes, "bf16_linear_bytes": bf16_bytes,
               "memory_ratio": fp8_bytes / bf16_bytes}
    log(f"wrote {dst_dir} ({total / 1e9:.2f} GB) in {time.time() - t0:.0f}s; quantized linear weights + scales "
        f"{fp8_bytes / 1e6:.1f} MB vs {bf16_bytes / 1e6:.1f} MB in bf16 (ratio {summary['memory_ratio']:.3f})")
    return summary
