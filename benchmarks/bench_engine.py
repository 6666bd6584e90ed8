"""Output tokens/s of the serving engine at a concurrency (default 8) vs sequential `Qwen3VL.generate` of the same
requests, measured in the same run on the same model; also through `qvl-agent serve` on loopback (--http).
Greedy outputs are checked to be identical on the way.

    python benchmarks/bench_engine.py [--model PATH] [--requests 16] [--concurrency 8] [--new-tokens 64] [--http]

Without --model the tiny random test checkpoint (tests/tiny_checkpoints.py, float32) is built in a temp folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def conversations(n: int) -> list[list[dict]]:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        text = f"Request {i}: describe what you see and what to do next. " * (1 + i % 4)
        if i % 2:
            image = Image.fromarray(rng.integers(0, 255, (200 + 20 * i, 320, 3), dtype=np.uint8))
            content = [{"type": "image", "image": image}, {"type": "text", "text": text}]
            out.append([{"role": "user", "content": content}])
        else:
            out.append([{"role": "user", "content": text}])
    return out


def with_concurrency(n_jobs: int, concurrency: int, job) -> float:
    """Run job(i) for i < n_jobs on `concurrency` threads; wall seconds."""
    next_job = iter(range(n_jobs))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(next_job, None)
            if i is None:
                return
            job(i)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def run(model_path: str | None, n_requests: int, concurrency: int, new_tokens: int, dtype: str, http: bool,
        repeats: int = 3, log=print) -> dict:
    import torch

    from model import Qwen3VL
    from model.engine import Engine, EngineConfig

    tmp = None
    if model_path is None:
        sys.path.insert(0, str(REPO / "tests"))
        import tiny_checkpoints

        tmp = tempfile.TemporaryDirectory()
        log("building the tiny test checkpoint ...")
        model_path = str(tiny_checkpoints.save_checkpoint(Path(tmp.name) / "tiny", tied=False))
        dtype = dtype or "float32"
    model = Qwen3VL.from_pretrained(model_path, dtype=getattr(torch, dtype or "bfloat16"))
    convs = conversations(n_requests)
    inputs = [model.preprocessor(c) for c in convs]

    # no prefix or encoder cache: the repeats send the same requests, and this measures batching alone
    engine = Engine(model, EngineConfig(max_num_seqs=concurrency, kv_cache_memory="1GiB", max_model_len=8192,
                                        prefix_caching=False, encoder_cache_embeds=0))
    total = n_requests * new_tokens
    try:
        model.generate(**inputs[0], max_new_tokens=4)                          # warm-up
        engine.generate(engine.request(convs[0], max_tokens=4))
        requests = [engine.request(c, max_tokens=new_tokens, ignore_eos=True, temperature=0) for c in convs]
        got: dict[int, list[int]] = {}

        def job(i):
            got[i] = engine.generate(requests[i]).token_ids

        # alternate the two, `repeats` times: a load change on a shared machine hits both alike
        sequential, batched = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            want = [model.generate(**x, max_new_tokens=new_tokens, eos_token_ids=[])[0].tolist() for x in inputs]
            sequential.append(time.perf_counter() - t0)
            batched.append(with_concurrency(n_requests, concurrency, job))
        ratios = sorted(s / e for s, e in zip(sequential, batched))
        sequential_s, engine_s = statistics.median(sequential), statistics.median(batched)
        result = {"requests": n_requests, "concurrency": concurrency, "new_tokens": new_tokens, "repeats": repeats,
                  "sequential_generate_tok_s": total / sequential_s, "engine_tok_s": total / engine_s,
                  "engine_vs_generate": statistics.median(ratios), "ratios": ratios,
                  "identical_greedy_tokens": [got[i] for i in range(n_requests)] == want}
        if http:
            result.update(_over_http(engine, convs, concurrency, new_tokens, total, sequential_s))
    finally:
        engine.close()
        if tmp is not None:
            tmp.cleanup()
    return result


def _over_http(engine, convs, concurrency: int, new_tokens: int, total: int, sequential_s: float) -> dict:
    import httpx

    from agent.policies import to_openai_messages
    from model.server.local import serve_engine

    server = serve_engine(engine, "bench")
    bodies = [{"model": "bench", "messages": to_openai_messages(c), "max_tokens": new_tokens, "ignore_eos": True,
               "temperature": 0} for c in convs]
    try:
        with httpx.Client(timeout=600) as client:
            def job(i):
                r = client.post(server.base_url + "/chat/completions", json=bodies[i])
                assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == new_tokens, r.text

            job(0)
            seconds = with_concurrency(len(bodies), concurrency, job)
    finally:
        server.stop()
    return {"http_tok_s": total / seconds, "http_vs_generate": sequential_s / seconds}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint folder (default: the tiny test checkpoint)")
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default=None)
    p.add_argument("--repeats", type=int, default=3, help="alternating timed runs of each (median)")
    p.add_argument("--http", action="store_true", help="also through qvl-agent serve on loopback")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    r = run(args.model, args.requests, args.concurrency, args.new_tokens, args.dtype, args.http, args.repeats,
            log=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"{r['requests']} requests x {r['new_tokens']} new tokens")
        print(f"  sequential generate    {r['sequential_generate_tok_s']:8.1f} tok/s")
        print(f"  engine, concurrency {r['concurrency']:<3}{r['engine_tok_s']:8.1f} tok/s   "
              f"{r['engine_vs_generate']:.2f}x generate (median of {r['repeats']}: "
              f"{', '.join(f'{x:.2f}' for x in r['ratios'])})")
        if "http_tok_s" in r:
            print(f"  serve over HTTP        {r['http_tok_s']:8.1f} tok/s   {r['http_vs_generate']:.2f}x generate")
        print(f"  greedy tokens identical: {r['identical_greedy_tokens']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
