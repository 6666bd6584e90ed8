"""Qwen3-VL configuration, parsed from a checkpoint's config.json (+ generation_config.json).

Every size of the family (2B ... 235B-A22B, dense and MoE) is described by these fields; nothing about a
particular size is hard-coded in the runtime. Hub files spell rotary settings two ways (`rope_scaling` +
`rope_theta` in the original releases, `rope_parameters` in transformers >= 5); both are accepted.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_MODEL = "Qwen/Qwen3-VL-2B-Instruct"   # what `run`, `eval` and `download` use when no --model is given

DENSE_ARCHITECTURE = "Qwen3VLForConditionalGeneration"
MOE_ARCHITECTURE = "Qwen3VLMoeForConditionalGeneration"
SUPPORTED_ARCHITECTURES = (DENSE_ARCHITECTURE, MOE_ARCHITECTURE)
SUPPORTED_MODEL_TYPES = ("qwen3_vl", "qwen3_vl_moe")


class _Section(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class VisionConfig(_Section):
    depth: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    out_hidden_size: int
    hidden_act: str = "gelu_pytorch_tanh"
    in_channels: int = 3
    patch_size: int = 16
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    num_position_embeddings: int = 2304
    deepstack_visual_indexes: tuple[int, ...] = (8, 16, 24)
    rope_theta: float = 10000.0

    @model_validator(mode="before")
    @classmethod
    def _flatten_rope(cls, data: dict) -> dict:
        data = dict(data)
        rope = data.get("rope_parameters") or {}
        if "rope_theta" in rope and "rope_theta" not in data:
            data["rope_theta"] = rope["rope_theta"]
        return data

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        """Values per pixel_values row: C * temporal_patch * patch * patch (1536 for the released models)."""
        return self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size


class TextConfig(_Section):
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    head_dim: int | None = None
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-6
    attention_bias: bool = False
    max_position_embeddings: int = 262144
    rope_theta: float = 5_000_000.0
    mrope_section: tuple[int, int, int] = (24, 20, 20)
    mrope_interleaved: bool = True
    # MoE (Qwen3-VL-MoE); num_experts == 0 means every layer is dense
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    norm_topk_prob: bool = True
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: dict) -> dict:
        data = dict(data)
        rope = dict(data.get("rope_scaling") or {})
        rope.update(data.get("rope_parameters") or {})
        for key in ("rope_theta", "mrope_section", "mrope_interleaved"):
            if key in rope and key not in data:
                data[key] = rope[key]
        if data.get("num_key_value_heads") is None:
            data["num_key_value_heads"] = data.get("num_attention_heads")
        if "num_experts" not in data and "num_local_experts" in data:  # transformers >= 5 writes this name
            data["num_experts"] = data["num_local_experts"]
        if data.get("mlp_only_layers") is None:
            data.pop("mlp_only_layers", None)
        return data

    @model_validator(mode="after")
    def _check(self) -> "TextConfig":
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if sum(self.mrope_section) * 2 != self.head_dim:
            raise ValueError(f"config.json: mrope_section {list(self.mrope_section)} must sum to head_dim/2 "
                             f"= {self.head_dim // 2}")
        if not self.mrope_interleaved:
            raise ValueError("config.json: only interleaved MRoPE (Qwen3-VL) is supported, "
                             "found mrope_interleaved=false")
        return self

    def is_moe_layer(self, layer: int) -> bool:
        return (self.num_experts > 0 and layer not in self.mlp_only_layers
                and (layer + 1) % self.decoder_sparse_step == 0)


class QuantizationConfig(_Section):
    """`quantization_config` of a fine-grained FP8 checkpoint (the only scheme this runtime runs).

    Which modules are quantized is read from the checkpoint itself (a `weight_scale_inv` next to a weight);
    `modules_to_not_convert` is informational here."""

    quant_method: str
    fmt: str = "e4m3"
    activation_scheme: str = "dynamic"
    weight_block_size: tuple[int, int]
    modules_to_not_convert: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: dict) -> dict:
        data = dict(data)
        if data.get("modules_to_not_convert") is None:
            data.pop("modules_to_not_convert", None)
        if data.get("quant_method") == "fp8" and not data.get("weight_block_size"):
            raise ValueError("per-tensor fp8 (no weight_block_size) is not supported; this runtime runs "
                             "block-quantized fp8 checkpoints (weight_block_size [128, 128])")
        return data

    @model_validator(mode="after")
    def _check(self) -> "QuantizationConfig":
        if self.quant_method != "fp8":
            raise ValueError(f"quant_method {self.quant_method!r} is not supported (this runtime runs fine-grained "
                             "'fp8' checkpoints with weight_block_size)")
        if self.fmt != "e4m3":
            raise ValueError(f"fp8 format {self.fmt!r} is not supported (e4m3 only)")
        if self.activation_scheme != "dynamic":
            raise ValueError(f"activation_scheme {self.activation_scheme!r} is not supported (dynamic only)")
        if min(self.weight_block_size) < 1:
            raise ValueError(f"weight_block_size {list(self.weight_block_size)} must be positive")
        return self


class Qwen3VLConfig(_Section):
    """The whole checkpoint config; `text` and `vision` are the config.json sub-dicts."""

    architecture: str
    text: TextConfig = Field(alias="text_config")
    vision: VisionConfig = Field(alias="vision_config")
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    tie_word_embeddings: bool = False
    quantization: QuantizationConfig | None = Field(default=None, alias="quantization_config")
    # from generation_config.json when present
    eos_token_ids: tuple[int, ...] = (151645, 151643)
    pad_token_id: int = 151643

    @property
    def is_moe(self) -> bool:
        return self.text.num_experts > 0

    @classmethod
    def from_dict(cls, raw: dict, generation: dict | None = None, source: str = "config.json") -> "Qwen3VLConfig":
        archs = raw.get("architectures") or []
        model_type = raw.get("model_type")
        arch = next((a for a in archs if a in SUPPORTED_ARCHITECTURES), None)
        if arch is None and model_type in SUPPORTED_MODEL_TYPES and not archs:
            arch = MOE_ARCHITECTURE if model_type == "qwen3_vl_moe" else DENSE_ARCHITECTURE
        if arch is None:
            found = ", ".join(archs) or "none"
            raise ValueError(f"{source}: unsupported model (architectures: {found}; model_type: {model_type}); "
                             f"this runtime runs Qwen3-VL checkpoints ({', '.join(SUPPORTED_ARCHITECTURES)})")
        for section in ("text_config", "vision_config"):
            if not isinstance(raw.get(section), dict):
                raise ValueError(f"{source}: missing '{section}' section")
        data = {k: v for k, v in raw.items() if k not in ("eos_token_id", "pad_token_id")}
        data["architecture"] = arch
        if arch == DENSE_ARCHITECTURE:  # a dense model has no experts, whatever stray MoE keys its config carries
            data["text_config"] = {k: v for k, v in raw["text_config"].items()
                                   if k not in ("num_experts", "num_local_experts")}
        generation = generation or {}
        eos = generation.get("eos_token_id", raw.get("eos_token_id"))
        if eos is not None:
            data["eos_token_ids"] = tuple(eos) if isinstance(eos, list) else (eos,)
        pad = generation.get("pad_token_id", raw.get("pad_token_id"))
        if pad is not None:
            data["pad_token_id"] = pad
        elif eos is not None:
            data["pad_token_id"] = data["eos_token_ids"][-1]
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise ValueError(f"{source}: invalid Qwen3-VL config ({problems})") from None

    @classmethod
    def from_folder(cls, folder: str | Path) -> "Qwen3VLConfig":
        folder = Path(folder)
        path = folder / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: no config.json (not a model folder)")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        generation = {}
        gen_path = folder / "generation_config.json"
        if gen_path.is_file():
            try:
                generation = json.loads(gen_path.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{gen_path}: not valid JSON ({e})") from None
        return cls.from_dict(raw, generation, source=str(path))
