"""CPU speed side by side: llama.cpp (llama-cpp-python), the embedded runtime and transformers on the same
random-weight checkpoint, in one process, interleaved, timed in CPU seconds (and wall seconds).

    python benchmarks/bench_llamacpp.py [--shape 2b|30b-a3b] [--threads 1 2] [--rounds 3] [--json]
    qvl-agent bench --compare llama.cpp ...          (same options)

Shapes: "2b" = Qwen3-VL-2B's config.json widths (hidden 2048, 16/8 heads, head_dim 128, intermediate 6144,
vocab 151,936, tied embeddings; ViT 1024 wide) with 4 text layers and 6 vision blocks; "30b-a3b" = the MoE's
text widths (32/4 heads, 128 experts, 8 active, expert width 768) with 2 layers, text only. The checkpoint
(bf16 random weights, the real Qwen BPE tokenizer of tests/qwen_tokenizer.py) and its GGUF conversions
(llama.cpp's own convert_hf_to_gguf.py: text f32 / bf16 / q8_0, `--mmproj` f32 / f16) are built once under
~/.cache/qvl-agent/bench/ (override with QVL_CACHE). Never inside the repository.

llama.cpp: llama-cpp-python built from source with GGML_NATIVE (all of this CPU's instruction sets) into
~/.cache/qvl-agent/llama-cpp-python-<version>/ by `--build-llama-cpp` (about 20 minutes on 2 cores); the
converter comes from the same sdist's vendor/llama.cpp tree. An installed llama_cpp package is used as is.

Measured per engine and thread count: prefill of 512 and 1024 random text tokens (logits of the last one),
decode of 64 forced tokens after the 512-token prefill (full logits every step), and one 1280x720 image
through the vision encoder (after preprocessing). Engine pairs: bf16 (llama.cpp bf16 GGUF + f16 projector,
ours bf16, transformers bf16), int8 (llama.cpp q8_0, ours --quantize int8; text only: neither quantizes the
vision encoder), f32 with `--groups f32`. llama.cpp resizes a 1280x720 image to 1280x736 (920 tokens), the
Qwen processor to 1280x704 (880 tokens); the report prints both counts. Medians over
rounds; ratios are engine time / our time (> 1: ours faster). Decode is also given as a fraction of the
bandwidth bound: bytes our decode step reads (weights + KV cache) / this machine's measured copy bandwidth.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # run as a script, or loaded by path by `qvl-agent bench`
from llamacpp_setup import (  # noqa: E402
    IMAGE_SIZE, LLAMA_CPP_DIR, LLAMA_CPP_VERSION, ROOT, SHAPES, build_llama_cpp, checkpoint, gguf, import_llama_cpp,
    missing_llama_cpp_message,
)

# ------------------------------------------------------------------------------------------ timing


@contextlib.contextmanager
def quiet_stderr():
    """mtmd prints its progress to fd 2 whatever the log level; hide it while it runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass
class Sample:
    cpu: float
    wall: float


def timed(fn) -> Sample:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return Sample(time.process_time() - c0, time.perf_counter() - w0)


@dataclass
class Inputs:
    prompt: list[int]               # 1024 random text ids; prefills use the first n
    forced: list[int]               # decode inputs
    pixel_values: object            # our / transformers' preprocessed 1280x720 image
    grid_thw: object
    image_rgb: bytes                # the same image for llama.cpp's own preprocessing


class Ours:
    def __init__(self, folder: Path, dtype: str, quantize: str | None):
        import torch

        from model import Qwen3VL

        self.torch = torch
        self.model = Qwen3VL.from_pretrained(folder, dtype=getattr(torch, dtype), quantize=quantize)
        self.state = None

    def prefill(self, ids: list[int], capacity: int) -> None:
        t = self.torch.tensor([ids])
        with self.torch.inference_mode():
            self.state = self.model.prefill(t, None, None, None, None, None, capacity=capacity)

    def decode(self, forced: list[int]) -> None:
        with self.torch.inference_mode():
            for tok in forced:
                self.model.decode_step(self.torch.tensor([tok]), self.state)

    def vision(self, inputs: Inputs) -> int:
        with self.torch.inference_mode():
            main, _ = self.model.visual(inputs.pixel_values.to(self.model.dtype), inputs.grid_thw)
        return main.shape[0]

    def decode_bytes(self, context: int) -> int:
        """Bytes one decode step reads: text weights (the routed experts only), lm_head, KV cache."""
        from model.cpu import Int8Linear, PackedExperts, PackedLinear

        m, t = self.model, self.model.config.text
        total = 0
        for module in [m.lm_head, *m.language_model.modules()]:
            if isinstance(module, PackedLinear):
                total += module.in_features * module.out_features * m.dtype.itemsize
            elif isinstance(module, Int8Linear):
                total += module.in_features * module.out_features + 4 * module.out_features
            elif isinstance(module, PackedExperts):   # its linears are counted above for all experts
                share = 1 - t.num_experts_per_tok / module.num_experts
                per = sum(x.in_features * x.out_features * (1 if isinstance(x, Int8Linear) else m.dtype.itemsize)
                          for x in (*module.gate_up, *module.down))
                total -= int(per * share)
        kv = 2 * t.num_hidden_layers * t.num_key_value_heads * t.head_dim * context * m.dtype.itemsize
        return total + kv


class Transformers:
    def __init__(self, folder: Path, dtype: str):
        import torch
        from transformers import AutoModelForImageTextToText

        self.torch = torch
        self.model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=getattr(torch, dtype)).eval()
        self.past = None

    def prefill(self, ids: list[int], capacity: int) -> None:
        with self.torch.inference_mode():
            out = self.model(input_ids=self.torch.tensor([ids]), use_cache=True, logits_to_keep=1)
        self.past = out.past_key_values

    def decode(self, forced: list[int]) -> None:
        with self.torch.inference_mode():
            for tok in forced:
                out = self.model(input_ids=self.torch.tensor([[tok]]), past_key_values=self.past, use_cache=True)
                self.past = out.past_key_values

    def vision(self, inputs: Inputs) -> int:
        with self.torch.inference_mode():
            out = self.model.model.visual(inputs.pixel_values.to(self.model.dtype), grid_thw=inputs.grid_thw)
        main = out.pooler_output if hasattr(out, "pooler_output") else out[0]
        return sum(x.shape[0] for x in main) if isinstance(main, (list, tuple)) else main.shape[0]


class LlamaCpp:
    def __init__(self, llama_cpp, text: Path, mmproj: Path | None):
        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(text), n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=1,
                                   n_threads_batch=1, verbose=False)
        self.mmproj = mmproj
        self.mtmd: dict[int, object] = {}      # threads -> mtmd context (its thread count is fixed at init)

    def threads(self, n: int) -> None:
        self.lib.llama_set_n_threads(self.llm.ctx, n, n)
        self.n_threads = n

    def prefill(self, ids: list[int], capacity: int) -> None:
        self.llm.reset()
        self.llm.eval(ids)

    def decode(self, forced: list[int]) -> None:
        for tok in forced:
            self.llm.eval([tok])

    def _mtmd(self):
        from llama_cpp import mtmd_cpp as mt

        if self.n_threads not in self.mtmd:
            params = mt.mtmd_context_params_default()
            params.use_gpu, params.n_threads, params.print_timings, params.warmup = False, self.n_threads, False, False
            with quiet_stderr():
                ctx = mt.mtmd_init_from_file(str(self.mmproj).encode(), self.llm._model.model, params)
            if not ctx:
                raise RuntimeError(f"llama.cpp could not load the projector {self.mmproj}")
            self.mtmd[self.n_threads] = ctx
        return self.mtmd[self.n_threads]

    def vision_chunk(self, inputs: Inputs):
        """Tokenize (llama.cpp's own preprocessing) -> the image chunk, ready to encode."""
        from llama_cpp import mtmd_cpp as mt

        ctx = self._mtmd()
        w, h = IMAGE_SIZE
        data = (ctypes.c_uint8 * len(inputs.image_rgb)).from_buffer_copy(inputs.image_rgb)
        bitmap = mt.mtmd_bitmap_init(w, h, data)
        marker = mt.mtmd_default_marker()
        text = mt.mtmd_input_text(text=marker, text_len=len(marker), add_special=False)
        chunks = mt.mtmd_input_chunks_init()
        bitmaps = (mt.mtmd_bitmap_p_ctypes * 1)(bitmap)
        with quiet_stderr():
            failed = mt.mtmd_tokenize(ctx, chunks, ctypes.byref(text), bitmaps, 1) != 0
        if failed:
            raise RuntimeError("mtmd_tokenize failed")
        for i in range(mt.mtmd_input_chunks_size(chunks)):
            chunk = mt.mtmd_input_chunks_get(chunks, i)
            if mt.mtmd_input_chunk_get_type(chunk) != 0:   # MTMD_INPUT_CHUNK_TYPE_TEXT == 0
                return ctx, chunk, (chunks, bitmap)
        raise RuntimeError("mtmd_tokenize produced no image chunk")

    def vision_encode(self, prepared) -> int:
        from llama_cpp import mtmd_cpp as mt

        ctx, chunk, _ = prepared
        with quiet_stderr():
            failed = mt.mtmd_encode_chunk(ctx, chunk) != 0
        if failed:
            raise RuntimeError("mtmd_encode_chunk failed")
        return mt.mtmd_input_chunk_get_n_tokens(chunk)


def make_inputs(folder: Path, seed: int = 0) -> Inputs:
    import numpy as np
    import torch
    from PIL import Image

    from model.preprocess import Preprocessor

    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    # a smooth image (random pixels are a worst case for no encoder and not what screenshots look like)
    w, h = IMAGE_SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([(xx * 255 // w), (yy * 255 // h), rng.integers(0, 255, (h, w))], -1).astype(np.uint8)
    image = Image.fromarray(rgb)
    pre = Preprocessor.from_pretrained(folder)
    feats = pre([{"role": "user", "content": [{"type": "image", "image": image}]}], add_generation_prompt=True)
    return Inputs(prompt=torch.randint(0, 150000, (1024,), generator=gen).tolist(),
                  forced=torch.randint(0, 150000, (64,), generator=gen).tolist(),
                  pixel_values=feats["pixel_values"], grid_thw=feats["image_grid_thw"], image_rgb=rgb.tobytes())


def copy_bandwidth(threads: int, nbytes: int = 1 << 30) -> dict:
    """Bytes per CPU second (all threads' CPU time, as the engines are timed) of a torch copy (read + write,
    counted as STREAM does) and of a sum (read only)."""
    import torch

    torch.set_num_threads(threads)
    a = torch.ones(nbytes // 8, dtype=torch.float32)
    b = torch.empty_like(a)
    b.copy_(a)
    copy = min(timed(lambda: b.copy_(a)).cpu for _ in range(3))
    read = min(timed(lambda: a.sum()).cpu for _ in range(3))
    return {"copy_GBps": 2 * a.nbytes / copy / 1e9, "read_GBps": a.nbytes / read / 1e9}


# ------------------------------------------------------------------------------------------ the run


@dataclass
class Engine:
    name: str            # e.g. "llama.cpp bf16"
    group: str           # bf16 | int8 | f32: engines compared with each other
    impl: object
    samples: dict[str, list[Sample]] = field(default_factory=dict)


def build_engines(shape: str, groups: list[str], vision: bool, llama_cpp, log) -> list[Engine]:
    folder = checkpoint(shape, log)
    engines = []
    proj = {"bf16": "mmproj-f16", "f32": "mmproj-f32"}   # int8 leaves the vision encoder as it is
    for group in groups:
        dtype = "float32" if group == "f32" else "bfloat16"
        text_kind = {"bf16": "bf16", "int8": "q8_0", "f32": "f32"}[group]
        if llama_cpp is not None:
            mmproj = gguf(shape, proj[group], log) if vision and group in proj else None
            engines.append(Engine(f"llama.cpp {text_kind}", group, LlamaCpp(llama_cpp, gguf(shape, text_kind, log),
                                                                            mmproj)))
        log(f"loading ours ({group}) ...")
        engines.append(Engine(f"ours {group}", group, Ours(folder, dtype, "int8" if group == "int8" else None)))
        if group != "int8":
            log(f"loading transformers ({group}) ...")
            engines.append(Engine(f"transformers {group}", group, Transformers(folder, dtype)))
    return engines


def measure(engine: Engine, inputs: Inputs, threads: int, prefill_lengths: list[int], decode_tokens: int,
            vision: bool) -> None:
    import torch

    torch.set_num_threads(threads)
    impl = engine.impl
    if isinstance(impl, LlamaCpp):
        impl.threads(threads)
    capacity = max(prefill_lengths) + decode_tokens + 1

    def add(key: str, sample: Sample) -> None:
        engine.samples.setdefault(f"{key}@{threads}t", []).append(sample)

    for n in sorted(prefill_lengths, reverse=True):   # the shortest last: decode continues from it
        add(f"prefill{n}", timed(lambda: impl.prefill(inputs.prompt[:n], capacity)))
    add(f"decode{decode_tokens}", timed(lambda: impl.decode(inputs.forced[:decode_tokens])))
    if vision and engine.group != "int8":
        if isinstance(impl, LlamaCpp):
            prepared = impl.vision_chunk(inputs)
            tokens = []
            add("vision", timed(lambda: tokens.append(impl.vision_encode(prepared))))
        else:
            tokens = []
            add("vision", timed(lambda: tokens.append(impl.vision(inputs))))
        engine.samples.setdefault("vision_tokens", [tokens[0]])


def run(shape: str = "2b", threads: list[int] = (1, 2), rounds: int = 3, groups: list[str] = ("bf16", "int8"),
        prefill_lengths: list[int] = (512, 1024), decode_tokens: int = 64, vision: bool = True,
        require_llama_cpp: bool = True, log=print) -> dict:
    if shape not in SHAPES:
        raise ValueError(f"--shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    llama_cpp = import_llama_cpp()
    if llama_cpp is None and require_llama_cpp:
        raise ValueError(missing_llama_cpp_message())
    vision = vision and not SHAPES[shape]["moe"]
    engines = build_engines(shape, list(groups), vision, llama_cpp, log)
    inputs = make_inputs(checkpoint(shape, log))
    bandwidth = {t: copy_bandwidth(t) for t in threads}
    log(f"timing {len(engines)} engines x {list(threads)} threads x {rounds} rounds (+1 warm-up) ...")
    for r in range(rounds + 1):
        for t in threads:
            for engine in engines:
                before = {k: len(v) for k, v in engine.samples.items()}
                measure(engine, inputs, t, list(prefill_lengths), decode_tokens, vision)
                if r == 0:   # warm-up round: drop it
                    for k, v in engine.samples.items():
                        if k != "vision_tokens":
                            del v[before.get(k, 0):]
        log(f"  round {r}/{rounds} done")
    return summarize(shape, engines, bandwidth, decode_tokens, min(prefill_lengths), list(threads))


def summarize(shape: str, engines: list[Engine], bandwidth: dict, decode_tokens: int, context: int,
              threads: list[int]) -> dict:
    rows = {}
    for e in engines:
        row = {}
        for key, samples in e.samples.items():
            if key == "vision_tokens":
                row[key] = samples[0]
                continue
            row[key] = {"cpu_s": statistics.median(s.cpu for s in samples),
                        "wall_s": statistics.median(s.wall for s in samples), "n": len(samples)}
        if isinstance(e.impl, Ours):
            row["decode_bytes_per_token"] = e.impl.decode_bytes(context + decode_tokens // 2)
        rows[e.name] = dict(row, group=e.group)
    ratios = {}
    for e in engines:
        if not e.name.startswith("ours"):
            continue
        ours = rows[e.name]
        for other in engines:
            if other.group != e.group or other is e:
                continue
            them = rows[other.name]
            ratios[f"{other.name} / {e.name}"] = {
                key: them[key]["cpu_s"] / ours[key]["cpu_s"] for key in ours
                if isinstance(ours.get(key), dict) and isinstance(them.get(key), dict)}
    bound = {}
    for e in engines:
        if isinstance(e.impl, Ours):
            for t in threads:
                key = f"decode{decode_tokens}@{t}t"
                if key in rows[e.name]:
                    per_token = rows[e.name][key]["cpu_s"] / decode_tokens      # CPU seconds, all threads
                    nbytes = rows[e.name]["decode_bytes_per_token"]
                    bound[f"{e.name}@{t}t"] = {
                        "bytes_per_token": nbytes, "copy_GBps": bandwidth[t]["copy_GBps"],
                        "achieved_GBps": nbytes / per_token / 1e9,
                        "fraction_of_copy_bandwidth": nbytes / per_token / 1e9 / bandwidth[t]["copy_GBps"],
                        "fraction_of_read_bandwidth": nbytes / per_token / 1e9 / bandwidth[t]["read_GBps"]}
    return {"shape": shape, "decode_tokens": decode_tokens, "engines": rows, "ratios": ratios,
            "bandwidth": bandwidth, "decode_vs_bandwidth": bound, "cpu": _cpu_name()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def format_report(result: dict) -> str:
    d = result["decode_tokens"]
    keys = sorted({k for row in result["engines"].values() for k in row if "@" in k},
                  key=lambda k: (int(k.split("@")[1][:-1]), k))
    lines = [f"shape {result['shape']}  cpu {result['cpu']}  (CPU seconds, median; wall in brackets)"]
    for key in keys:
        what, t = key.split("@")
        lines.append(f"-- {what} ({t})")
        for name, row in result["engines"].items():
            if key not in row:
                continue
            s = row[key]
            rate = ""
            if what.startswith("prefill"):
                rate = f"{int(what[7:]) / s['cpu_s']:8.1f} tok/s"
            elif what.startswith("decode"):
                rate = f"{d / s['cpu_s']:8.2f} tok/s"
            elif what == "vision":
                rate = f"  ({row.get('vision_tokens', '?')} image tokens)"
            lines.append(f"   {name:24s} {s['cpu_s']:8.3f} s  [{s['wall_s']:8.3f}]  {rate}")
    lines.append("-- ratios (their CPU time / ours; > 1: ours faster)")
    for pair, r in result["ratios"].items():
        lines.append(f"   {pair:40s} " + "  ".join(f"{k} x{v:.2f}" for k, v in sorted(r.items())))
    lines.append("-- decode vs this machine's bandwidth (bytes read per token and per CPU second / copy bandwidth)")
    for name, b in result["decode_vs_bandwidth"].items():
        lines.append(f"   {name:24s} {b['bytes_per_token'] / 1e9:.3f} GB/token at {b['achieved_GBps']:.1f} GB/s "
                     f"= {100 * b['fraction_of_copy_bandwidth']:.0f}% of copy ({b['copy_GBps']:.1f} GB/s), "
                     f"{100 * b['fraction_of_read_bandwidth']:.0f}% of read")
    return "\n".join(lines)


def top1_agreement(shape: str, positions: int = 500, log=print) -> dict:
    """Greedy (top-1) agreement with our bf16 model over `positions` teacher-forced positions of one random
    prompt: ours int8, and llama.cpp q8_0 and bf16 (all logits of one prefill each). Random weights have a
    small logit scale (near-ties), so this is a lower bound on what a trained model shows."""
    import numpy as np
    import torch

    folder = checkpoint(shape, log)
    ids = make_inputs(folder).prompt[:positions]

    def ours(quantize):
        model = Ours(folder, "bfloat16", quantize).model
        with torch.inference_mode():
            return model.logits(torch.tensor([ids]))[0].float().numpy()

    ref = ours(None)
    result = {"positions": positions, "ref_logit_std": float(ref.std()),
              "ref_top1_margin_median": float(np.median(np.diff(np.sort(ref, -1)[:, -2:], axis=-1)))}
    top = ref.argmax(-1)
    result["ours int8"] = float((ours("int8").argmax(-1) == top).mean())
    llama_cpp = import_llama_cpp()
    if llama_cpp is not None:
        for kind in ("bf16", "q8_0"):
            llm = llama_cpp.Llama(model_path=str(gguf(shape, kind, log)), n_ctx=positions + 8, n_batch=512,
                                  n_ubatch=512, logits_all=True, verbose=False)
            llm.eval(ids)
            result[f"llama.cpp {kind}"] = float((np.asarray(llm.scores[:positions]).argmax(-1) == top).mean())
            del llm
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shape", choices=list(SHAPES), default="2b")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up (median)")
    parser.add_argument("--groups", nargs="+", choices=["bf16", "int8", "f32"], default=["bf16", "int8"],
                        help="precisions to compare (each: llama.cpp, ours, transformers)")
    parser.add_argument("--prefill", type=int, nargs="+", default=[512, 1024], help="prefill lengths")
    parser.add_argument("--decode", type=int, default=64, help="forced decode tokens after the shortest prefill")
    parser.add_argument("--no-vision", action="store_true", help="skip the 1280x720 image encode")
    parser.add_argument("--build-llama-cpp", action="store_true",
                        help=f"build llama-cpp-python {LLAMA_CPP_VERSION} from source into {LLAMA_CPP_DIR} first")
    parser.add_argument("--agreement", type=int, metavar="N", default=0,
                        help="instead of timing: top-1 agreement with our bf16 over N positions (int8, llama.cpp)")
    parser.add_argument("--json", action="store_true")


def run_from_args(args: argparse.Namespace) -> int:
    log = lambda msg: print(msg, file=sys.stderr)   # noqa: E731
    if args.build_llama_cpp and import_llama_cpp() is None:
        build_llama_cpp(log)
    if min(args.threads) < 1 or args.rounds < 1 or args.decode < 1 or min(args.prefill) < 1:
        raise ValueError("--threads, --rounds, --decode and --prefill must be positive")
    if args.agreement:
        result = top1_agreement(args.shape, args.agreement, log)
        print(json.dumps(result, indent=2))
        return 0
    result = run(args.shape, args.threads, args.rounds, args.groups, args.prefill, args.decode, not args.no_vision,
                 log=log)
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    sys.exit(run_from_args(p.parse_args()))
