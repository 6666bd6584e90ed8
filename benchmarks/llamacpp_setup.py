"""Setup for benchmarks/bench_llamacpp.py: llama-cpp-python built from source into a cache folder, llama.cpp's
GGUF converter from the same sdist, and the random-weight checkpoints of real Qwen3-VL shapes with their GGUF
conversions. Everything lands under ~/.cache/qvl-agent (QVL_CACHE), never inside the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("QVL_CACHE", Path.home() / ".cache" / "qvl-agent"))
LLAMA_CPP_VERSION = "0.3.36"
LLAMA_CPP_DIR = CACHE / f"llama-cpp-python-{LLAMA_CPP_VERSION}"
LLAMA_CPP_SDIST = CACHE / "sdist" / f"llama_cpp_python-{LLAMA_CPP_VERSION}.tar.gz"
CMAKE_ARGS = "-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF"

TOKEN_IDS = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
                 vision_end_token_id=151653)
GENERATION_CONFIG = {"bos_token_id": 151643, "pad_token_id": 151643, "eos_token_id": [151645, 151643]}
ROPE = {"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20], "mrope_interleaved": True}
SHAPES = {
    "2b": dict(
        moe=False, tied=True,
        text=dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=4,
                  num_attention_heads=16, num_key_value_heads=8, head_dim=128, rope_parameters=ROPE),
        vision=dict(depth=6, hidden_size=1024, num_heads=16, intermediate_size=4096, out_hidden_size=2048,
                    num_position_embeddings=2304, deepstack_visual_indexes=[1, 3, 5])),
    "30b-a3b": dict(
        moe=True, tied=False,
        text=dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=2,
                  num_attention_heads=32, num_key_value_heads=4, head_dim=128, rope_parameters=ROPE,
                  num_experts=128, num_experts_per_tok=8, moe_intermediate_size=768, norm_topk_prob=True,
                  decoder_sparse_step=1, mlp_only_layers=[]),
        vision=dict(depth=2, hidden_size=1152, num_heads=16, intermediate_size=4304, out_hidden_size=2048,
                    num_position_embeddings=2304, deepstack_visual_indexes=[1])),
}
VISION_COMMON = dict(patch_size=16, temporal_patch_size=2, spatial_merge_size=2)
IMAGE_SIZE = (1280, 720)


# ------------------------------------------------------------------------------------------ llama.cpp setup


def import_llama_cpp():
    """The llama_cpp package (installed, or the cached source build), or None."""
    if str(LLAMA_CPP_DIR) not in sys.path and LLAMA_CPP_DIR.is_dir():
        sys.path.insert(0, str(LLAMA_CPP_DIR))
    try:
        import llama_cpp
        import llama_cpp.mtmd_cpp  # noqa: F401  (vision; built by default since 0.3.10)
    except ImportError:
        return None
    return llama_cpp


def missing_llama_cpp_message() -> str:
    return ("llama-cpp-python is not installed; build it once with `python benchmarks/bench_llamacpp.py "
            f"--build-llama-cpp` (source build with GGML_NATIVE into {LLAMA_CPP_DIR}, ~20 min on 2 cores)")


def _sdist() -> Path:
    if not LLAMA_CPP_SDIST.is_file():
        LLAMA_CPP_SDIST.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={LLAMA_CPP_VERSION}", "-d", str(LLAMA_CPP_SDIST.parent)], check=True)
    return LLAMA_CPP_SDIST


def build_llama_cpp(log=print) -> None:
    """pip-build llama-cpp-python from source for this CPU into the cache folder (not into site-packages)."""
    log(f"building llama-cpp-python {LLAMA_CPP_VERSION} with {CMAKE_ARGS} into {LLAMA_CPP_DIR} ...")
    env = dict(os.environ, CMAKE_ARGS=CMAKE_ARGS, CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 1))
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(LLAMA_CPP_DIR)]
    subprocess.run(pip + [str(_sdist())], check=True, env=env)
    subprocess.run(pip + ["diskcache>=5.6"], check=True)   # llama_cpp imports it; --no-deps keeps numpy ours


def converter() -> Path:
    """llama.cpp's convert_hf_to_gguf.py from the sdist's vendor tree (extracted once into the cache)."""
    tree = CACHE / f"llama.cpp-{LLAMA_CPP_VERSION}"
    script = tree / "convert_hf_to_gguf.py"
    if not script.is_file():
        prefix = f"llama_cpp_python-{LLAMA_CPP_VERSION}/vendor/llama.cpp/"
        with tarfile.open(_sdist()) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()
                       and m.name[len(prefix):].split("/")[0] in ("convert_hf_to_gguf.py", "conversion", "gguf-py")]
            for m in members:
                m.name = m.name[len(prefix):]
            tar.extractall(tree, members=members, filter="data")
    return script


# ------------------------------------------------------------------------------------------ checkpoints


def checkpoint(shape: str, log=print) -> Path:
    """The random-weight HF checkpoint of `shape` (bf16 safetensors + real tokenizer), built once."""
    folder = CACHE / "bench" / shape / "hf"
    if (folder / "model.safetensors.index.json").is_file() or (folder / "model.safetensors").is_file():
        return folder
    import torch
    from transformers import (Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLMoeConfig,
                              Qwen3VLMoeForConditionalGeneration)

    sys.path.insert(0, str(ROOT / "tests"))
    import qwen_tokenizer

    spec = SHAPES[shape]
    log(f"building the {shape} random checkpoint in {folder} ...")
    cls, cfg_cls = ((Qwen3VLMoeForConditionalGeneration, Qwen3VLMoeConfig) if spec["moe"]
                    else (Qwen3VLForConditionalGeneration, Qwen3VLConfig))
    config = cfg_cls(text_config=spec["text"], vision_config=dict(VISION_COMMON, **spec["vision"]),
                     tie_word_embeddings=spec["tied"], **TOKEN_IDS)
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)   # initialised in bf16 directly: half the peak memory
    try:
        model = cls(config).eval()
    finally:
        torch.set_default_dtype(default)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    del model
    if spec["moe"]:
        _experts_to_hub_layout(folder)
    (folder / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG))
    qwen_tokenizer.save_processor(folder)
    return folder


def _experts_to_hub_layout(folder: Path) -> None:
    """save_pretrained writes fused experts as [E, 2I, H] / [E, H, I]; the Hub files (and llama.cpp's converter,
    which splits gate|up along the last dim) have [E, H, 2I] / [E, I, H]. Both loaders read the Hub layout."""
    from safetensors.torch import load_file, save_file

    for f in sorted(folder.glob("*.safetensors")):
        tensors = load_file(str(f))
        for name in [n for n in tensors if n.endswith(("experts.gate_up_proj", "experts.down_proj"))]:
            tensors[name] = tensors[name].transpose(1, 2).contiguous()
        save_file(tensors, str(f), metadata={"format": "pt"})


def gguf(shape: str, kind: str, log=print) -> Path:
    """kind: f32 | bf16 | q8_0 (text model) or mmproj-f32 | mmproj-f16 (vision projector)."""
    out = CACHE / "bench" / shape / f"{kind}.gguf"
    if out.is_file():
        return out
    src = checkpoint(shape, log)
    mmproj = kind.startswith("mmproj-")
    cmd = [sys.executable, str(converter()), str(src), "--outtype", kind.removeprefix("mmproj-"),
           "--outfile", str(out)] + (["--mmproj"] if mmproj else [])
    log(f"converting to {out.name} with llama.cpp's convert_hf_to_gguf.py ...")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"convert_hf_to_gguf.py failed for {kind}:\n{done.stderr[-3000:]}")
    if mmproj and not out.is_file():  # some converter versions prefix the name themselves
        found = sorted(out.parent.glob(f"*{out.name}"))
        if found:
            found[0].rename(out)
    return out
