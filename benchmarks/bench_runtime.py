"""Prefill and decode speed of the embedded runtime vs transformers, measured in the same run on the same
checkpoint and the same input tensors (one image + text). Ratios > 1 mean the runtime is faster.

    python benchmarks/bench_runtime.py [--model PATH] [--prompt-tokens 256] [--new-tokens 32] [--device cuda]
    qvl-agent bench ...                       (same options)
    qvl-agent bench --compare llama.cpp ...   (benchmarks/bench_llamacpp.py: llama.cpp, ours and transformers
                                               on random checkpoints of real shapes, CPU)

Without --model a tiny random checkpoint is built with transformers in a temp folder (speed of the code
paths, not of a real model). Inputs are built by hand (no tokenizer needed), so any checkpoint works.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

DTYPES = ("bfloat16", "float16", "float32")

TINY_VISION = dict(depth=4, hidden_size=64, num_heads=4, intermediate_size=128, patch_size=16, temporal_patch_size=2,
                   spatial_merge_size=2, num_position_embeddings=64, out_hidden_size=128,
                   deepstack_visual_indexes=[0, 1, 2])
TINY_TEXT = dict(vocab_size=151936, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                 rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [6, 5, 5],
                                  "mrope_interleaved": True})


def build_tiny_checkpoint(folder: Path) -> Path:
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    torch.manual_seed(0)
    config = Qwen3VLConfig(vision_config=TINY_VISION, text_config=TINY_TEXT, tie_word_embeddings=True)
    Qwen3VLForConditionalGeneration(config).save_pretrained(str(folder))
    return folder


def make_inputs(config, prompt_tokens: int, image_grid: tuple[int, int], seed: int = 0) -> dict:
    """input_ids [1, L] = text, <vision_start>, image pads, <vision_end>, text; random pixels for one image."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    gh, gw = image_grid
    n_pads = gh * gw // config.vision.spatial_merge_size ** 2
    n_text = max(prompt_tokens - n_pads - 2, 2)
    text = torch.randint(0, 150000, (n_text,), generator=gen)
    ids = torch.cat([text[: n_text // 2], torch.tensor([config.vision_start_token_id]),
                     torch.full((n_pads,), config.image_token_id), torch.tensor([config.vision_end_token_id]),
                     text[n_text // 2:]])[None]
    pixels = torch.randn(gh * gw, config.vision.patch_dim, generator=gen)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels,
            "image_grid_thw": torch.tensor([[1, gh, gw]])}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sample_ours(model, inputs: dict, new_tokens: int) -> tuple[float, float]:
    """One run of the runtime -> (prefill seconds, decode seconds per token)."""
    model.generate(**inputs, max_new_tokens=new_tokens, eos_token_ids=[])
    t = model.timings
    return t["prefill_s"], t["decode_s"] / max(t["decode_steps"], 1)


def sample_transformers(ref, inputs: dict, new_tokens: int, device) -> tuple[float, float]:
    """One run of transformers -> (prefill = one forward over the prompt, decode per token =
    (generate N tokens - generate 1 token) / (N - 1))."""
    import torch

    hf_inputs = dict(inputs, mm_token_type_ids=(inputs["input_ids"] == ref.config.image_token_id).long())

    def timed(fn) -> float:
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - t0

    def gen(n: int):
        return lambda: ref.generate(**hf_inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False)

    with torch.inference_mode():
        prefill = timed(lambda: ref(**hf_inputs, use_cache=True, logits_to_keep=1))
        decode = (timed(gen(new_tokens)) - timed(gen(1))) / (new_tokens - 1)
    return prefill, decode


def run(model: str | None = None, prompt_tokens: int = 256, new_tokens: int = 32, image_grid=(16, 16),
        dtype: str = "bfloat16", device: str | None = None, repeats: int = 3, log=print,
        quantize: str | None = None) -> dict:
    """Both runtimes on the same checkpoint and inputs -> timings and ratios (transformers / ours)."""
    import torch
    from transformers import AutoModelForImageTextToText

    from model import Qwen3VL

    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if prompt_tokens < 8 or new_tokens < 2 or repeats < 1:
        raise ValueError("need --prompt-tokens >= 8, --new-tokens >= 2 and --repeats >= 1")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tmp = None
    if model is None:
        tmp = tempfile.TemporaryDirectory(prefix="qvl-bench-")
        log("building a tiny random checkpoint (no --model given) ...")
        model = str(build_tiny_checkpoint(Path(tmp.name)))
    try:
        t0 = time.perf_counter()
        ours = Qwen3VL.from_pretrained(model, dtype=getattr(torch, dtype), device=dev, quantize=quantize)
        load_s = time.perf_counter() - t0
        inputs = make_inputs(ours.config, prompt_tokens, image_grid)
        log(f"runtime loaded in {load_s:.1f}s; loading transformers ...")
        ref = AutoModelForImageTextToText.from_pretrained(model, dtype=getattr(torch, dtype)).to(dev).eval()
        inputs = {k: v.to(dev) for k, v in inputs.items()}
        log(f"timing {inputs['input_ids'].shape[1]} prompt tokens (one {image_grid[0]}x{image_grid[1]}-patch "
            f"image), {new_tokens} new tokens, {repeats} repeats after a warm-up ...")
        # alternate the two runtimes so that load changes on a shared machine hit both alike; one warm-up each
        ours_runs, hf_runs = [], []
        for _ in range(repeats + 1):
            ours_runs.append(sample_ours(ours, inputs, new_tokens))
            hf_runs.append(sample_transformers(ref, inputs, new_tokens, dev))
        ours_t = _medians(ours_runs[1:])
        hf_t = _medians(hf_runs[1:])
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {
        "model": model if tmp is None else "tiny random checkpoint",
        "device": str(dev), "dtype": dtype + (f" ({quantize})" if quantize else ""), "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "new_tokens": new_tokens, "load_s": load_s,
        "ours": {**ours_t, "decode_tok_s": 1 / ours_t["decode_s_per_token"]},
        "transformers": {**hf_t, "decode_tok_s": 1 / hf_t["decode_s_per_token"]},
        "prefill_speedup": hf_t["prefill_s"] / ours_t["prefill_s"],
        "decode_speedup": hf_t["decode_s_per_token"] / ours_t["decode_s_per_token"],
    }


def _medians(runs: list[tuple[float, float]]) -> dict:
    return {"prefill_s": statistics.median(r[0] for r in runs),
            "decode_s_per_token": statistics.median(r[1] for r in runs)}


def format_report(result: dict) -> str:
    o, t = result["ours"], result["transformers"]
    return "\n".join([
        f"model: {result['model']}  device: {result['device']}  dtype: {result['dtype']}  "
        f"prompt: {result['prompt_tokens']} tokens  new: {result['new_tokens']} tokens",
        f"{'':14}{'prefill (ms)':>14}{'decode tok/s':>14}",
        f"{'runtime':14}{o['prefill_s'] * 1e3:>14.1f}{o['decode_tok_s']:>14.1f}",
        f"{'transformers':14}{t['prefill_s'] * 1e3:>14.1f}{t['decode_tok_s']:>14.1f}",
        f"speedup (transformers time / runtime time): prefill x{result['prefill_speedup']:.2f}, "
        f"decode x{result['decode_speedup']:.2f}",
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint folder or Hub id in the local cache (default: tiny random)")
    parser.add_argument("--prompt-tokens", type=int, default=256, help="prompt length incl. image tokens")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens to decode")
    parser.add_argument("--image-grid", type=int, nargs=2, default=[16, 16], metavar=("H", "W"),
                        help="image size in 16-px patches (even numbers)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="bfloat16")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up (median)")
    parser.add_argument("--quantize", choices=["int8"], help="load ours with int8 weights (CPU)")
    parser.add_argument("--compare", choices=["transformers", "llama.cpp"], default="transformers",
                        help="llama.cpp: run benchmarks/bench_llamacpp.py (needs llama-cpp-python)")
    parser.add_argument("--shape", choices=["2b", "30b-a3b"], default="2b",
                        help="--compare llama.cpp: the random checkpoint's shape")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="--compare llama.cpp: thread counts")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run_from_args(args: argparse.Namespace) -> int:
    if args.compare == "llama.cpp":
        return _run_llamacpp(args)
    gh, gw = args.image_grid
    if gh <= 0 or gw <= 0 or gh % 2 or gw % 2:
        raise ValueError(f"--image-grid must be two positive even numbers, got {gh} {gw}")
    result = run(args.model, args.prompt_tokens, args.new_tokens, (gh, gw), args.dtype, args.device, args.repeats,
                 log=lambda msg: print(msg, file=sys.stderr), quantize=args.quantize)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


def _run_llamacpp(args: argparse.Namespace) -> int:
    """`--compare llama.cpp`: the side-by-side harness with this command's options mapped onto it."""
    import importlib.util

    if args.model is not None:
        raise ValueError("--compare llama.cpp builds and converts its own random checkpoints (--shape); "
                         "it does not take --model")
    if args.device not in (None, "cpu"):
        raise ValueError("--compare llama.cpp runs on the CPU only")
    spec = importlib.util.spec_from_file_location("bench_llamacpp", Path(__file__).with_name("bench_llamacpp.py"))
    harness = sys.modules["bench_llamacpp"] = importlib.util.module_from_spec(spec)   # dataclasses look it up
    spec.loader.exec_module(harness)
    if harness.import_llama_cpp() is None:
        raise ValueError(harness.missing_llama_cpp_message())
    group = "int8" if args.quantize else {"float32": "f32", "bfloat16": "bf16"}.get(args.dtype)
    if group is None:
        raise ValueError(f"--compare llama.cpp compares bf16, float32 or --quantize int8, not {args.dtype}")
    result = harness.run(args.shape, args.threads, args.repeats, [group], [args.prompt_tokens], args.new_tokens,
                         log=lambda msg: print(msg, file=sys.stderr))
    print(json.dumps(result, indent=2) if args.json else harness.format_report(result))
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    sys.exit(run_from_args(p.parse_args()))
