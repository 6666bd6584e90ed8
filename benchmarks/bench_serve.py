"""`qvl-agent bench serve`: load an OpenAI-compatible chat server (ours or vLLM) the way `vllm bench serve
--backend openai-chat --dataset-name random-mm` does, and report the same numbers.

Each request is random text of about --random-input-len tokens plus --random-mm-base-items-per-request random
images whose (height, width, frames) come from --random-mm-bucket-config, asking for --random-output-len tokens
(with `ignore_eos`, so every request produces them where the server supports it). Requests are sent at
--request-rate (Poisson, `inf` = all at once) with at most --max-concurrency in flight, streamed, and timed:
TTFT (send -> first streamed token), TPOT ((latency - TTFT) / (output tokens - 1)), ITL (every gap between
streamed chunks), E2EL; output tokens come from the server's usage chunk (vLLM's definitions, engine.md §4.1).

    qvl-agent bench serve --base-url http://127.0.0.1:8000/v1 --num-prompts 100 --max-concurrency 8
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import base64
import io
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

WORDS = ("the of and to in is was for on that with as by at from this it an be are or his her which one all had "
         "they you were their has can more when there been some would other into than its also only time new over "
         "these two may first after any most such where many well must made through back years much your way "
         "down should because each just those people how too little state good very make world still own see").split()


@dataclass
class RequestResult:
    ok: bool
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0
    error: str = ""


def parse_buckets(text: str) -> list[tuple[tuple[int, int, int], float]]:
    """'{(224, 224, 1): 0.5, (720, 1280, 1): 0.5}' -> [((224, 224, 1), 0.5), ...], weights renormalized."""
    try:
        raw = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"--random-mm-bucket-config: {text!r} is not a dict like '{{(224, 224, 1): 1.0}}'") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError("--random-mm-bucket-config must be a non-empty dict {(height, width, frames): probability}")
    buckets = []
    for key, p in raw.items():
        if not (isinstance(key, tuple) and len(key) == 3 and all(isinstance(v, int) and v > 0 for v in key)):
            raise ValueError(f"--random-mm-bucket-config: key {key!r} is not (height, width, frames)")
        if key[2] != 1:
            raise ValueError(f"--random-mm-bucket-config: {key}: videos (frames > 1) are not supported (as in vLLM)")
        if not isinstance(p, (int, float)) or p < 0:
            raise ValueError(f"--random-mm-bucket-config: probability of {key} must be >= 0")
        buckets.append((key, float(p)))
    total = sum(p for _, p in buckets)
    if total <= 0:
        raise ValueError("--random-mm-bucket-config: the probabilities add up to 0")
    return [(k, p / total) for k, p in buckets]


def random_image_url(rng: np.random.Generator, height: int, width: int) -> str:
    from PIL import Image

    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def lengths(rng: random.Random, mean: int, ratio: float) -> int:
    lo, hi = int(mean * (1 - ratio)), int(mean * (1 + ratio))
    return max(1, rng.randint(lo, max(lo, hi)))


def build_requests(args, tokenizer=None) -> list[dict]:
    """The random-mm dataset: chat bodies, fixed for a given --seed."""
    rng = random.Random(args.seed)
    np_rng = np.random.default_rng(args.seed)
    buckets = parse_buckets(args.random_mm_bucket_config)
    prefix = " ".join(rng.choice(WORDS) for _ in range(args.random_prefix_len))
    bodies = []
    for i in range(args.num_prompts):
        n_in = lengths(rng, args.random_input_len, args.random_range_ratio)
        n_out = lengths(rng, args.random_output_len, args.random_range_ratio)
        if tokenizer is not None:   # exact token counts: random ids decoded (vLLM's random dataset)
            ids = [rng.randrange(1000, min(tokenizer.vocab_size, 100000)) for _ in range(n_in)]
            text = tokenizer.decode(ids)
        else:                       # about one token per word for a real tokenizer
            text = " ".join(rng.choice(WORDS) for _ in range(n_in))
        base = args.random_mm_base_items_per_request
        r = args.random_mm_num_mm_items_range_ratio
        n_items = rng.randint(int(np.floor(base * (1 - r))), int(np.ceil(base * (1 + r)))) if r > 0 else base
        n_items = min(n_items, args.random_mm_limit_mm_per_prompt)
        parts = []
        for _ in range(n_items):
            h, w, _ = buckets[np_rng.choice(len(buckets), p=[p for _, p in buckets])][0]
            parts.append({"type": "image_url", "image_url": {"url": random_image_url(np_rng, h, w)}})
        parts.append({"type": "text", "text": (prefix + " " + text).strip() if prefix else text})
        body = {"model": args.model, "messages": [{"role": "user", "content": parts}], "max_tokens": n_out,
                "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.0}
        if args.ignore_eos:
            body["ignore_eos"] = True
        bodies.append(body)
    return bodies


async def send(client, url: str, body: dict) -> RequestResult:
    import httpx

    start = time.perf_counter()
    result = RequestResult(ok=False)
    last = start
    try:
        async with client.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                result.error = f"HTTP {r.status_code}: {(await r.aread())[:200].decode(errors='replace')}"
                return result
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    result.output_tokens = chunk["usage"].get("completion_tokens", 0)
                    result.prompt_tokens = chunk["usage"].get("prompt_tokens", 0)
                choices = chunk.get("choices") or []
                if choices and (choices[0].get("delta") or {}).get("content"):
                    now = time.perf_counter()
                    if result.ttft == 0.0:
                        result.ttft = now - start
                    else:
                        result.itl.append(now - last)
                    last = now
        result.latency = time.perf_counter() - start
        result.ok = result.ttft > 0
        if not result.ok:
            result.error = "no content was streamed"
    except (httpx.HTTPError, json.JSONDecodeError) as e:
        result.error = f"{type(e).__name__}: {e}"
    return result


async def run(args, bodies: list[dict]) -> tuple[list[RequestResult], float]:
    import httpx
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    url = args.base_url.rstrip("/") + "/chat/completions"
    limit = args.max_concurrency or len(bodies)
    gate = asyncio.Semaphore(limit)
    rng = random.Random(args.seed + 1)
    results: list[RequestResult] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(args.timeout), headers=headers,
                                 limits=httpx.Limits(max_connections=limit + 4)) as client:
        for body in bodies[:args.num_warmups]:
            await send(client, url, body)
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(), disable=args.no_progress,
                      console=Console(stderr=True)) as progress:
            bar = progress.add_task("requests", total=len(bodies))

            async def one(body):
                async with gate:
                    res = await send(client, url, body)
                results.append(res)
                progress.advance(bar)

            t0 = time.perf_counter()
            tasks = []
            for body in bodies:
                tasks.append(asyncio.create_task(one(body)))
                if args.request_rate != float("inf"):   # Poisson arrivals (gamma with burstiness 1)
                    await asyncio.sleep(rng.gammavariate(args.burstiness, 1.0 / (args.request_rate * args.burstiness)))
            await asyncio.gather(*tasks)
            duration = time.perf_counter() - t0
    return results, duration


def summarize(results: list[RequestResult], duration: float) -> dict:
    ok = [r for r in results if r.ok]
    ms = lambda xs: {"mean": float(np.mean(xs)) * 1e3 if xs else 0.0,      # noqa: E731
                     "median": float(np.median(xs)) * 1e3 if xs else 0.0,
                     "p99": float(np.percentile(xs, 99)) * 1e3 if xs else 0.0}
    out_tokens = sum(r.output_tokens for r in ok)
    in_tokens = sum(r.prompt_tokens for r in ok)
    tpot = [(r.latency - r.ttft) / (r.output_tokens - 1) for r in ok if r.output_tokens > 1]
    return {"completed": len(ok), "failed": len(results) - len(ok), "duration_s": duration,
            "total_input_tokens": in_tokens, "total_output_tokens": out_tokens,
            "request_throughput": len(ok) / duration, "output_throughput": out_tokens / duration,
            "total_token_throughput": (in_tokens + out_tokens) / duration,
            "ttft_ms": ms([r.ttft for r in ok]), "tpot_ms": ms(tpot), "itl_ms": ms([x for r in ok for x in r.itl]),
            "e2el_ms": ms([r.latency for r in ok]),
            "errors": sorted({r.error for r in results if not r.ok})[:5]}


def print_summary(s: dict) -> None:
    line = "=" * 50
    print(f"{line}\n{'Serving Benchmark Result':^50}\n{line}")
    rows = [("Successful requests:", s["completed"]), ("Failed requests:", s["failed"]),
            ("Benchmark duration (s):", f"{s['duration_s']:.2f}"), ("Total input tokens:", s["total_input_tokens"]),
            ("Total generated tokens:", s["total_output_tokens"]),
            ("Request throughput (req/s):", f"{s['request_throughput']:.2f}"),
            ("Output token throughput (tok/s):", f"{s['output_throughput']:.2f}"),
            ("Total token throughput (tok/s):", f"{s['total_token_throughput']:.2f}")]
    for name, value in rows:
        print(f"{name:<40}{value:>10}")
    for key, title in (("ttft_ms", "Time to First Token"), ("tpot_ms", "Time per Output Token (excl. 1st token)"),
                       ("itl_ms", "Inter-token Latency"), ("e2el_ms", "End-to-end Latency")):
        print(f"{title:-^50}")
        short = key.split("_")[0].upper()
        for stat in ("mean", "median", "p99"):
            print(f"{(stat.capitalize() if stat != 'p99' else 'P99') + ' ' + short + ' (ms):':<40}"
                  f"{s[key][stat]:>10.2f}")
    print(line)
    for e in s["errors"]:
        print(f"error: {e}", file=sys.stderr)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="the server's /v1 URL")
    p.add_argument("--model", default=None, help="model name to send (default: the server's first /v1/models entry)")
    p.add_argument("--api-key", default=None)
    p.add_argument("--tokenizer", default=None,
                   help="checkpoint folder whose tokenizer makes exact-length random prompts (default: random words)")
    p.add_argument("--num-prompts", type=int, default=100)
    p.add_argument("--max-concurrency", type=int, default=None, help="requests in flight at most (default: all)")
    p.add_argument("--request-rate", type=float, default=float("inf"), help="requests/s, Poisson (default inf)")
    p.add_argument("--burstiness", type=float, default=1.0, help="gamma shape of the arrivals (1 = Poisson)")
    p.add_argument("--random-input-len", type=int, default=256)
    p.add_argument("--random-output-len", type=int, default=32)
    p.add_argument("--random-range-ratio", type=float, default=0.0, help="lengths uniform in len*(1 -/+ r)")
    p.add_argument("--random-prefix-len", type=int, default=0, help="a fixed prefix of this many words")
    p.add_argument("--random-mm-base-items-per-request", type=int, default=1)
    p.add_argument("--random-mm-num-mm-items-range-ratio", type=float, default=0.0)
    p.add_argument("--random-mm-limit-mm-per-prompt", type=int, default=8, help="images per request at most")
    p.add_argument("--random-mm-bucket-config", default="{(224, 224, 1): 1.0}",
                   help="image sizes '{(height, width, frames): probability, ...}'")
    p.add_argument("--no-ignore-eos", dest="ignore_eos", action="store_false",
                   help="do not send ignore_eos (for servers that reject unknown fields)")
    p.add_argument("--num-warmups", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run_from_args(args: argparse.Namespace) -> int:
    import httpx

    if args.num_prompts < 1:
        raise ValueError(f"--num-prompts must be >= 1, got {args.num_prompts}")
    if args.max_concurrency is not None and args.max_concurrency < 1:
        raise ValueError(f"--max-concurrency must be >= 1, got {args.max_concurrency}")
    if args.request_rate <= 0:
        raise ValueError(f"--request-rate must be > 0, got {args.request_rate}")
    if not 0 <= args.random_range_ratio < 1:
        raise ValueError(f"--random-range-ratio must be in [0, 1), got {args.random_range_ratio}")
    if args.model is None:
        headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        try:
            r = httpx.get(args.base_url.rstrip("/") + "/models", headers=headers, timeout=30)
            args.model = r.json()["data"][0]["id"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as e:
            raise ValueError(f"cannot read the model name from {args.base_url}/models ({e}); pass --model") from None
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    bodies = build_requests(args, tokenizer)
    results, duration = asyncio.run(run(args, bodies))
    summary = summarize(results, duration)
    summary["config"] = {k: v for k, v in vars(args).items() if k not in ("func", "api_key") and
                         not callable(v) and k != "bench_mode"}
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_summary(summary)
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    sys.exit(run_from_args(parser.parse_args()))
