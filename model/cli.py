"""`qvl-agent generate` (answer a prompt about images with the embedded runtime), `qvl-agent bench` (runtime vs
transformers speed, benchmarks/bench_runtime.py), `qvl-agent bench serve` (an OpenAI-compatible server under load,
benchmarks/bench_serve.py), `qvl-agent quantize` (model/quantize.py) and `qvl-agent download` (a Hub checkpoint
into the local cache).

Only argparse runs at import: torch and the runtime are imported by the handlers, so `qvl-agent --help` is fast and a
bad flag is refused before anything heavy loads."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from model.config import DEFAULT_MODEL

DTYPE_NAMES = ("bfloat16", "float16", "float32")
# What the runtime reads from a checkpoint repository (the Hub repos also hold README, images, .gguf, ...).
DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model", "*.tiktoken"]
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

    quant = subparsers.add_parser(
        "quantize", help="write an FP8 (128x128 block) copy of a bf16/fp32 Qwen3-VL checkpoint",
        description="Quantize the text decoder's linear weights (attention, MLP, MoE experts) of a Qwen3-VL "
                    "safetensors checkpoint to FP8 e4m3 with one scale per 128x128 block, in the format of the "
                    "official Qwen3-VL -FP8 releases. Vision tower, embeddings, lm_head, norms and MoE routers "
                    "stay in bfloat16.")
    quant.add_argument("src", metavar="SRC", help="checkpoint folder (or a Hub id in the local cache)")
    quant.add_argument("dst", metavar="DST", help="output folder (must not exist, or be empty)")
    quant.add_argument("--fp8", action="store_true",
                       help="fine-grained FP8 (e4m3, 128x128 weight blocks, dynamic activations)")
    quant.add_argument("--max-shard-size", default="4GB",
                       help="largest output shard, e.g. 4GB or 500MB (default: 4GB)")
    quant.set_defaults(func=run_quantize)

    down = subparsers.add_parser(
        "download", help="download a checkpoint from the Hugging Face Hub into the local cache",
        description="Download a model repository (config, tokenizer, safetensors weights) into the local Hugging "
                    "Face cache, where --model REPO_ID finds it afterwards. Resumes an interrupted download.")
    down.add_argument("repo_id", nargs="?", default=DEFAULT_MODEL, help=f"Hub repo id (default {DEFAULT_MODEL})")
    down.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    down.set_defaults(func=run_download)

    bench = subparsers.add_parser("bench", help="prefill/decode speed: embedded runtime vs transformers; "
                                                "`bench serve`: load a server; --compare llama.cpp",
                                  description=(
                                      "Time prefill and decode of the embedded runtime and of transformers on the "
                                      "same checkpoint and inputs, in the same run; print both and their ratio."))
    modes = bench.add_subparsers(dest="bench_mode", metavar="MODE")
    serve = modes.add_parser("serve", help="load an OpenAI-compatible server (ours or vLLM) in vLLM's random-mm style",
                             description="Send random text + image chat requests to an OpenAI-compatible server at a "
                                         "concurrency / request rate; print TTFT, TPOT, ITL, E2EL and throughput.")
    for parser, script in ((bench, "bench_runtime.py"), (serve, "bench_serve.py")):
        try:
            module = _bench_module(script)
        except FileNotFoundError as e:  # installed without the source checkout: keep `generate` usable
            def unavailable(args: argparse.Namespace, missing=e) -> int:
                raise missing

            parser.set_defaults(func=unavailable)
            continue
        module.add_arguments(parser)
        parser.set_defaults(func=module.run_from_args)


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _bench_module(script: str):
    path = BENCHMARKS / script
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (qvl-agent bench runs the source checkout's benchmarks)")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up there
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


def run_generate(args: argparse.Namespace) -> int:
    import torch

    from agent.progress import LoadProgress
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
                                    progress=LoadProgress(), tensor_parallel_size=args.tp, quantize=args.quantize)
    try:
        return _answer(args, model, images, time.perf_counter() - t0)
    finally:
        model.close()


def _answer(args: argparse.Namespace, model, images: list, load_s: float) -> int:
    import torch

    from agent.progress import StepProgress

    pre = model.preprocessor

    content = [{"type": "image", "image": im} for im in images] + [{"type": "text", "text": args.prompt}]
    inputs = pre([{"role": "user", "content": content}], add_generation_prompt=True)
    stop = set(model.eos_token_ids) | {model.config.pad_token_id}
    printed: list[int] = []
    shown = ""
    status = StepProgress()   # --json prints at the end: show the token count meanwhile

    def stream(token: torch.Tensor) -> None:
        nonlocal shown
        tid = int(token[0])
        if tid in stop:
            return
        printed.append(tid)
        if args.json:
            status.tokens(len(printed))
            return
        text = pre.decode(printed)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            sys.stdout.write(text[len(shown):])
            sys.stdout.flush()
            shown = text

    if args.json:
        status.start()
    try:
        new_ids = model.generate(**{k: v for k, v in inputs.items()}, max_new_tokens=args.max_new_tokens,
                                 temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=args.seed,
                                 stream=stream)
    finally:
        status.stop()
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


def run_quantize(args: argparse.Namespace) -> int:
    if not args.fp8:
        raise ValueError("choose the target format: --fp8 (fine-grained FP8, 128x128 blocks) is the only one")
    from model.quantize import parse_size, quantize_checkpoint

    max_bytes = parse_size(args.max_shard_size)
    quantize_checkpoint(args.src, args.dst, max_bytes, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    return 0


def run_download(args: argparse.Namespace) -> int:
    from model.loader import REPO_ID

    if not REPO_ID.match(args.repo_id):
        raise ValueError(f"{args.repo_id!r} is not a Hub repo id such as {DEFAULT_MODEL}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    print(f"downloading {args.repo_id} into the Hugging Face cache ...", file=sys.stderr, flush=True)
    try:  # huggingface_hub shows one progress bar per file (tqdm; plain lines when stderr is not a terminal)
        path = snapshot_download(args.repo_id, revision=args.revision, allow_patterns=DOWNLOAD_PATTERNS)
    except RepositoryNotFoundError:
        raise ValueError(f"{args.repo_id}: no such model on the Hugging Face Hub (or it is gated: "
                         "log in with `hf auth login`)") from None
    except RevisionNotFoundError:
        raise ValueError(f"{args.repo_id}: no revision {args.revision!r}") from None
    except (HfHubHTTPError, OSError) as e:  # offline, DNS, proxy, disk full
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConnectionError(f"cannot download {args.repo_id}: {first}") from None
    print(path)
    return 0
