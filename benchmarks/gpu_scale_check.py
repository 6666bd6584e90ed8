"""One prepared GPU session for the scale work (MoE + FP8 + TP): prints one JSON line per number, exits 1 on a failed
check, 2 without CUDA. Runs in well under 5 minutes on one H100.

    python benchmarks/gpu_scale_check.py               # on a GPU machine
    python benchmarks/gpu_scale_check.py --device cpu  # dry run of the script itself on a much smaller model

1. FP8 linear layers on Qwen3-VL shapes: `Fp8Linear` (blockwise `scaled_mm` on Hopper + CUDA >= 12.9, dequantization
   otherwise) vs the exact W8A8 block arithmetic and vs F.linear on the dequantized weight, with timings.
2. A small random dense model and a small random MoE model (built with transformers, bf16, real vocab):
   prefill / decode speed of this runtime vs transformers on the same inputs (ratio > 1: ours faster), and the
   same model quantized with `qvl-agent quantize --fp8`: speed, and top-1 agreement with transformers running
   the dequantized weights.
3. With >= 2 visible GPUs: TP=2 (NCCL, worker process) vs TP=1 greedy tokens and logits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

DENSE_TEXT = dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=8,
                  num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                  rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
                                   "mrope_interleaved": True})
MOE_TEXT = dict(DENSE_TEXT, num_experts=32, num_experts_per_tok=8, moe_intermediate_size=768, decoder_sparse_step=1)
VISION = dict(depth=4, hidden_size=512, num_heads=8, intermediate_size=1536, patch_size=16, temporal_patch_size=2,
              spatial_merge_size=2, num_position_embeddings=2304, out_hidden_size=2048, deepstack_visual_indexes=[1, 2])
# --device cpu: the same code paths on a model small enough for a laptop
CPU_SHRINK = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, moe_intermediate_size=384, num_experts=4, num_experts_per_tok=2)
CPU_VISION = dict(depth=2, hidden_size=64, num_heads=2, intermediate_size=128, out_hidden_size=256,
                  deepstack_visual_indexes=[0])
LINEAR_SHAPES = [(4096, 2048), (2048, 4096), (2048, 768), (12288, 4096)]


def emit(**row) -> None:
    print(json.dumps(row), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device: torch.device, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-30)).item()


# ---------------------------------------------------------------------------------------------- 1. FP8 linears


def check_linears(device: torch.device, failures: list) -> None:
    import model.quant as quant
    from model.quant import Fp8Linear, dequantize_fp8_block, quantize_activation_per_token_group

    g = torch.Generator().manual_seed(0)
    shapes = LINEAR_SHAPES if device.type == "cuda" else [(256, 256)]
    for n, k in shapes:
        layer = Fp8Linear.from_float((torch.randn(n, k, generator=g) * 0.02).to(device, torch.bfloat16))
        w_deq = dequantize_fp8_block(layer.weight, layer.weight_scale_inv, torch.bfloat16)
        for m in (1, 512):
            x = torch.randn(m, k, generator=g).to(device, torch.bfloat16)
            fast = quant._scaled_mm_supported(x, layer.weight, layer.block)
            y = layer(x)
            fast = fast and quant._SCALED_MM_STATE["disabled"] is None
            xq, xs = quantize_activation_per_token_group(x)
            x_deq = (xq.float().view(m, k // 128, 128) * xs.unsqueeze(-1)).view(m, k)
            w8a8 = x_deq @ dequantize_fp8_block(layer.weight, layer.weight_scale_inv, torch.float32).T
            weight_only = F.linear(x, w_deq)
            row = dict(check="fp8_linear", N=n, K=k, M=m, path="scaled_mm" if fast else "dequant",
                       rel_err_vs_w8a8=rel_err(y, w8a8), rel_err_vs_dequant_linear=rel_err(y, weight_only))
            ok = (row["rel_err_vs_w8a8"] if fast else row["rel_err_vs_dequant_linear"]) < 1e-2
            row["ok"] = bool(ok and row["rel_err_vs_dequant_linear"] < 0.06 and torch.isfinite(y).all())
            reps = 20 if device.type == "cuda" else 3
            row["ms_fp8"] = median_ms(lambda: layer(x), device, reps)
            row["ms_bf16"] = median_ms(lambda: F.linear(x, w_deq), device, reps)
            emit(**row)
            if not row["ok"]:
                failures.append(row)
    if quant._SCALED_MM_STATE["disabled"] is not None:
        emit(check="fp8_linear", scaled_mm_disabled_because=quant._SCALED_MM_STATE["disabled"])


# ---------------------------------------------------------------------------------------------- 2. models


def build(folder: Path, moe: bool, device: torch.device) -> Path:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLMoeConfig, \
        Qwen3VLMoeForConditionalGeneration

    text = dict(MOE_TEXT if moe else DENSE_TEXT, initializer_range=0.05)
    vision = dict(VISION)
    if device.type == "cpu":
        text.update({k: v for k, v in CPU_SHRINK.items() if moe or "expert" not in k})
        vision.update(CPU_VISION)
    ids = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
    cfg_cls, model_cls = ((Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration) if moe
                          else (Qwen3VLConfig, Qwen3VLForConditionalGeneration))
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU: seconds instead of a minute on the host
        model = model_cls(cfg_cls(vision_config=vision, text_config=text, tie_word_embeddings=False, **ids))
    model.to(torch.bfloat16).save_pretrained(str(folder))
    return folder


def hf_speed(ref, inputs: dict, new_tokens: int, device: torch.device, reps: int) -> tuple[float, float]:
    """(prefill ms, decode ms/token) of transformers: generate(1) and the difference generate(N) - generate(1)."""
    def gen(n):
        with torch.no_grad():
            return ref.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False)

    one = median_ms(lambda: gen(1), device, reps)
    many = median_ms(lambda: gen(new_tokens), device, reps)
    return one, (many - one) / (new_tokens - 1)


def ours_speed(model, inputs: dict, new_tokens: int, device: torch.device, reps: int) -> tuple[float, float]:
    prefill, decode = [], []
    model.generate(**inputs, max_new_tokens=new_tokens, eos_token_ids=[])
    for _ in range(reps):
        model.generate(**inputs, max_new_tokens=new_tokens, eos_token_ids=[])
        t = model.timings
        prefill.append(t["prefill_s"] * 1e3)
        decode.append(t["decode_s"] * 1e3 / max(t["decode_steps"], 1))
    return statistics.median(prefill), statistics.median(decode)


def check_models(device: torch.device, root: Path, failures: list) -> dict[str, Path]:
    from bench_runtime import make_inputs
    from transformers import AutoModelForImageTextToText

    from model import Qwen3VL
    from model.quantize import quantize_checkpoint
    from model.quant import fp8_weight_bytes

    prompt_tokens, new_tokens, reps = (1024, 64, 3) if device.type == "cuda" else (128, 8, 1)
    folders = {}
    for kind in ("dense", "moe"):
        t0 = time.perf_counter()
        src = folders[kind] = build(root / kind, kind == "moe", device)
        fp8 = folders[f"{kind}_fp8"] = root / f"{kind}_fp8"
        quantize_checkpoint(str(src), str(fp8), log=lambda *a, **k: None)
        emit(check="build", kind=kind, seconds=round(time.perf_counter() - t0, 1))

        ref = AutoModelForImageTextToText.from_pretrained(src, dtype=torch.bfloat16).to(device).eval()
        ours = Qwen3VL.from_pretrained(src, dtype=torch.bfloat16, device=device)
        inputs = {k: v.to(device) for k, v in make_inputs(ours.config, prompt_tokens, (16, 16)).items()}
        hf_inputs = dict(inputs, mm_token_type_ids=(inputs["input_ids"] == ours.config.image_token_id).long())
        hf_pre, hf_dec = hf_speed(ref, hf_inputs, new_tokens, device, reps)
        our_pre, our_dec = ours_speed(ours, inputs, new_tokens, device, reps)
        del ours
        fp8_model = Qwen3VL.from_pretrained(fp8, dtype=torch.bfloat16, device=device)
        fp8_pre, fp8_dec = ours_speed(fp8_model, inputs, new_tokens, device, reps)
        emit(check="speed", kind=kind, prompt_tokens=prompt_tokens, new_tokens=new_tokens,
             hf_bf16_prefill_ms=round(hf_pre, 2), hf_bf16_decode_ms_per_token=round(hf_dec, 3),
             ours_bf16_prefill_ms=round(our_pre, 2), ours_bf16_decode_ms_per_token=round(our_dec, 3),
             ours_fp8_prefill_ms=round(fp8_pre, 2), ours_fp8_decode_ms_per_token=round(fp8_dec, 3),
             prefill_speedup_ours_bf16_vs_hf=round(hf_pre / our_pre, 3),
             decode_speedup_ours_bf16_vs_hf=round(hf_dec / our_dec, 3),
             decode_speedup_ours_fp8_vs_hf_bf16=round(hf_dec / fp8_dec, 3))
        del ref

        # FP8 accuracy: ours (scaled_mm on Hopper: activations quantized too) vs transformers on dequantized weights
        deq = AutoModelForImageTextToText.from_pretrained(_dequantized(fp8, root / f"{kind}_deq"),
                                                          dtype=torch.bfloat16).to(device).eval()
        ids = torch.randint(0, 150_000, (2, 300), generator=torch.Generator().manual_seed(1)).to(device)
        with torch.no_grad():
            want = deq(input_ids=ids).logits.float()
        got = fp8_model.logits(ids).float()
        agree = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
        bf16_bytes = sum(p.numel() * 2 for p in fp8_model.parameters() if p.dtype == torch.float8_e4m3fn)
        row = dict(check="fp8_model_accuracy", kind=kind, positions=ids.numel(), top1_agreement=round(agree, 4),
                   max_abs_logit_delta=(got - want).abs().max().item(), logit_scale=want.abs().max().item(),
                   memory_ratio_vs_bf16=round(fp8_weight_bytes(fp8_model) / bf16_bytes, 4), ok=agree >= 0.97)
        emit(**row)
        if not row["ok"]:
            failures.append(row)
        del deq, fp8_model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return folders


def _dequantized(fp8: Path, dst: Path) -> Path:
    """A bf16 copy of an FP8 checkpoint, experts fused as transformers saves them."""
    from safetensors.torch import save_file

    from model.loader import CheckpointReader
    from model.quantize import dequantize_state

    reader = CheckpointReader.from_folder(fp8, torch.device("cpu"))
    out = dequantize_state({n: reader.get(n) for n in reader.names()})
    dst.mkdir()
    config = json.loads((fp8 / "config.json").read_text())
    config.pop("quantization_config")
    (dst / "config.json").write_text(json.dumps(config))
    save_file(out, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


# ---------------------------------------------------------------------------------------------- 3. TP


def check_tp(device: torch.device, folders: dict[str, Path], failures: list) -> None:
    from model import Qwen3VL

    if device.type != "cuda" or torch.cuda.device_count() < 2:
        emit(check="tp2", skipped=f"needs 2 GPUs, {torch.cuda.device_count() if device.type == 'cuda' else 0} visible")
        return
    ids = torch.randint(0, 150_000, (1, 256), generator=torch.Generator().manual_seed(2))
    for kind in ("dense_fp8", "moe_fp8"):
        one = Qwen3VL.from_pretrained(folders[kind], dtype=torch.bfloat16, device=device)
        want_logits, want = one.logits(ids), one.generate(ids, max_new_tokens=32, eos_token_ids=[])
        del one
        two = Qwen3VL.from_pretrained(folders[kind], dtype=torch.bfloat16, device=device, tensor_parallel_size=2)
        try:
            got_logits, got = two.logits(ids), two.generate(ids, max_new_tokens=32, eos_token_ids=[])
        finally:
            two.close()
        same = int((got == want).all(-1).sum())
        row = dict(check="tp2", kind=kind, greedy_identical=bool(torch.equal(got, want)), rows_identical=same,
                   max_abs_logit_delta=(got_logits.float() - want_logits.float()).abs().max().item(),
                   top1_agreement=(got_logits.argmax(-1) == want_logits.argmax(-1)).float().mean().item())
        row["ok"] = row["top1_agreement"] >= 0.97   # bf16 all-reduce order differs from one GPU: not bitwise
        emit(**row)
        if not row["ok"]:
            failures.append(row)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_scale_check: no CUDA device (run it on a GPU machine, or --device cpu for a dry run)",
              file=sys.stderr)
        return 2
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device)}
    if device.type == "cuda":
        info.update(name=torch.cuda.get_device_name(device), capability=list(torch.cuda.get_device_capability(device)),
                    gpus=torch.cuda.device_count())
    emit(info=info)
    t0 = time.perf_counter()
    failures: list = []
    check_linears(device, failures)
    with tempfile.TemporaryDirectory(prefix="qvl-gpu-scale-") as tmp:
        folders = check_models(device, Path(tmp), failures)
        check_tp(device, folders, failures)
    emit(summary="FAIL" if failures else "OK", failures=len(failures), seconds=round(time.perf_counter() - t0, 1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
