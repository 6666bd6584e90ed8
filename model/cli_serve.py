"""`qvl-agent serve`: the OpenAI-compatible server (model/server/) over the serving engine (model/engine/)."""

from __future__ import annotations

import argparse
import sys
import time

from model.cli import DTYPE_NAMES, _device


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve a checkpoint over an OpenAI-compatible HTTP API",
                              description="Serve a Qwen3-VL checkpoint over an OpenAI-compatible HTTP API "
                                          "(/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics) "
                                          "with continuous batching, a paged KV cache and prefix caching.")
    p.add_argument("--model", required=True, help="checkpoint folder, or Hub id in the local HF cache")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", default=None, help="the model name clients send (default: --model)")
    p.add_argument("--max-model-len", type=int, default=None,
                   help="longest prompt + output in tokens (default: the checkpoint's)")
    p.add_argument("--max-num-seqs", type=int, default=32, help="requests in the running batch at once")
    p.add_argument("--max-num-batched-tokens", type=int, default=2048,
                   help="tokens per engine step: the prefill chunk size")
    p.add_argument("--kv-cache-memory", default="0.25",
                   help="KV-cache size (e.g. 4GiB, 512MB) or a fraction of the free memory (default 0.25)")
    p.add_argument("--block-size", type=int, default=16, help="tokens per KV-cache block")
    p.add_argument("--no-prefix-caching", action="store_true", help="turn off prefix caching")
    p.add_argument("--tp", type=int, default=None, metavar="N", help="tensor-parallel size")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="bfloat16")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--max-body-size", default="100MiB", help="largest request body (default 100MiB)")
    p.add_argument("--allowed-local-media-path", default=None, metavar="DIR",
                   help="allow file:// images under DIR (default: none)")
    p.add_argument("--allowed-media-domains", nargs="*", default=[], metavar="HOST",
                   help="hosts whose http(s) image URLs may be fetched (default: none)")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from agent.progress import LoadProgress
    from model.engine import Engine, EngineConfig
    from model.engine.kv_cache import kv_cache_bytes, parse_size
    from model.server.app import ServerSettings, build_app
    from model.server.media import MediaPolicy

    for name in ("max_num_seqs", "max_num_batched_tokens", "block_size", "port"):
        if getattr(args, name) < (0 if name == "port" else 1):
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.max_model_len is not None and args.max_model_len < 1:
        raise ValueError(f"--max-model-len must be positive, got {args.max_model_len}")
    body_limit = parse_size(args.max_body_size, "--max-body-size")
    kv_cache_bytes(args.kv_cache_memory, torch.device("cpu"))   # a bad size fails before the model loads
    media = MediaPolicy.from_args(args.allowed_local_media_path, args.allowed_media_domains)
    device = _device(args.device)
    print(f"loading {args.model} ({args.dtype}, {device}) ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    engine = Engine.from_pretrained(args.model, dtype=getattr(torch, args.dtype), device=device,
                                    tensor_parallel_size=args.tp,
                                    progress=LoadProgress(),
                                    max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs,
                                    max_num_batched_tokens=args.max_num_batched_tokens, block_size=args.block_size,
                                    kv_cache_memory=args.kv_cache_memory, prefix_caching=not args.no_prefix_caching)
    name = args.served_model_name or args.model
    settings = ServerSettings(name, args.api_key, body_limit, media, str(args.model))
    app = build_app(engine, settings)
    print(f"loaded in {time.perf_counter() - t0:.1f} s; KV cache {engine.pool.num_blocks} blocks x "
          f"{engine.config.block_size} tokens ({engine.kv_bytes / 2 ** 20:.0f} MiB), max model len "
          f"{engine.max_model_len}", file=sys.stderr)
    print(f"serving {name!r} on http://{args.host}:{args.port}/v1 (Ctrl-C drains and stops)", file=sys.stderr,
          flush=True)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=30,
                            lifespan="off")
    try:
        uvicorn.Server(config).run()   # on SIGINT/SIGTERM: stops accepting, lets open requests finish (30 s)
    except KeyboardInterrupt:          # uvicorn re-raises the signal once it has drained
        pass
    finally:
        print("stopped", file=sys.stderr, flush=True)
        engine.close()
        engine.model.close()
    return 0
