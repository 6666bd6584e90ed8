"""`qvl-agent generate` (answer a prompt about images with the embedded runtime) and `qvl-agent bench`
(runtime vs transformers speed, benchmarks/bench_runtime.py)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

DTYPE_NAMES = ("bfloat16", "float16", "float32")
QUANTIZE_CHOICES = ("int8",)   # model.cpu.QUANTIZE_CHOICES (not imported here: it would load torch for --help)


def register(subparsers) -> None:
    gen = subparsers.add_parser("generate", help="answer a prompt (with images) using the embedded runtime",
                                description="Answer a prompt about zero or more images with the embedded "
                                            "Qwen3-VL runtime. The answer streams to stdout.")
    gen.add_argument("--model", required=True, help="checkpoint folder, or Hub id in the local HF cache")
    gen.add_argument("--image", action="append", default=[], metavar="FILE",
                     help="image file (repeat for several images)")
    gen.add_argument("--prompt", required=True, help="the question or instruction")
    gen.add_argument("--max-new-tokens", type=int, default=256)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--dtype", choices=DTYPE_NAMES, default="bfloat16")
    gen.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=None,
                     help="CPU: int8 weights with per-row scales, int8 activations per token (model/cpu.py)")
    gen.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    gen.add_argument("--json", action="store_true", help="print answer, token ids and timings as JSON")
    gen.add_argument("--tp", type=int, default=None, metavar="N",
                     help="tensor-parallel size: shard the model over N processes (N GPUs from --device on CUDA; "
                          "default 1, or WORLD_SIZE under torchrun)")
    gen.set_defaults(func=run_generate)

    bench = subparsers.add_parser("bench", help="prefill/decode speed: embedded runtime vs transformers "
                                               "(or llama.cpp with --compare llama.cpp)",
                                  description=(
                                      "Time prefill and decode of the embedded runtime and of transformers on the "
                                      "same checkpoint and inputs, in the same run; print both and their ratio."))
    try:
        bench_module = _bench_module()
    except FileNotFoundError as e:  # installed without the source checkout: keep `generate` usable
        missing = e

        def unavailable(args: argparse.Namespace) -> int:
            raise missing

        bench.set_defaults(func=unavailable)
        return
    bench_module.add_arguments(bench)
    bench.set_defaults(func=bench_module.run_from_args)


BENCH_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_runtime.py"


def _bench_module():
    path = BENCH_SCRIPT
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (qvl-agent bench runs the source checkout's benchmark)")
    spec = importlib.util.spec_from_file_location("bench_runtime", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _device(name: str | None):
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device: unknown device {name!r} (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return device


def _progress_line(done: int, total: int) -> None:
    if done == total or (done * 20) // total != ((done - 1) * 20) // total:   # every 5%
        sys.stderr.write(f"\r  weights {done}/{total}" + ("\n" if done == total else ""))
        sys.stderr.flush()


def run_generate(args: argparse.Namespace) -> int:
    import torch

    from model import Qwen3VL
    from model.preprocess import load_image

    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.tp is not None and args.tp < 1:
        raise ValueError(f"--tp must be >= 1, got {args.tp}")
    images = []
    for name in args.image:  # fail on a bad image before spending time on loading the model
        if not Path(name).expanduser().is_file():
            raise FileNotFoundError(f"--image {name}: no such file")
        images.append(load_image(Path(name).expanduser()))
    device = _device(args.device)
    tp = f", tensor-parallel {args.tp}" if args.tp and args.tp > 1 else ""
    quant = f", {args.quantize}" if args.quantize else ""
    print(f"loading {args.model} ({args.dtype}{quant}, {device}{tp}) ...", file=sys.stderr)
    t0 = time.perf_counter()
    model = Qwen3VL.from_pretrained(args.model, dtype=getattr(torch, args.dtype), device=device,
                                    progress=_progress_line if sys.stderr.isatty() else None,
                                    tensor_parallel_size=args.tp, quantize=args.quantize)
    try:
        return _answer(args, model, images, time.perf_counter() - t0)
    finally:
        model.close()


def _answer(args: argparse.Namespace, model, images: list, load_s: float) -> int:
    import torch

    pre = model.preprocessor

    content = [{"type": "image", "image": im} for im in images] + [{"type": "text", "text": args.prompt}]
    inputs = pre([{"role": "user", "content": content}], add_generation_prompt=True)
    stop = set(model.eos_token_ids) | {model.config.pad_token_id}
    printed: list[int] = []
    shown = ""

    def stream(token: torch.Tensor) -> None:
        nonlocal shown
        tid = int(token[0])
        if tid in stop:
            return
        printed.append(tid)
        text = pre.decode(printed)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            sys.stdout.write(text[len(shown):])
            sys.stdout.flush()
            shown = text

    new_ids = model.generate(**{k: v for k, v in inputs.items()}, max_new_tokens=args.max_new_tokens,
                             temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=args.seed,
                             stream=None if args.json else stream)
    ids = new_ids[0].tolist()
    answer = pre.decode([i for i in ids if i not in stop])
    t = model.timings
    if args.json:
        print(json.dumps({
            "answer": answer,
            "token_ids": ids,
            "prompt_tokens": int(inputs["input_ids"].shape[1]),
            "timings": {"load_s": round(load_s, 4), "prefill_s": round(t["prefill_s"], 4),
                        "decode_s": round(t["decode_s"], 4),
                        "decode_tok_s": round(t["decode_steps"] / t["decode_s"], 2) if t["decode_s"] > 0 else None},
        }))
    else:
        sys.stdout.write(answer[len(shown):] + "\n")
        decode = f", decode {t['decode_steps'] / t['decode_s']:.1f} tok/s" if t["decode_s"] > 0 else ""
        print(f"[load {load_s:.1f}s, prefill {t['prefill_s'] * 1e3:.0f} ms{decode}]", file=sys.stderr)
    return 0
