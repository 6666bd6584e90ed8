"""Check (and time) the CUDA FP8 path of model.quant on a real GPU.

    python benchmarks/gpu_fp8_check.py            # on a GPU machine; exits 1 if a check fails
    python benchmarks/gpu_fp8_check.py --device cpu   # dry run of the script itself (dequantization path only)

For Qwen3-VL linear shapes it compares `Fp8Linear` (blockwise-scaled `scaled_mm` on Hopper with CUDA >= 12.9,
dequantization elsewhere) against
  * the exact arithmetic of the W8A8 block scheme (per-token-group activation quantization, fp32 products),
    computed with plain fp32 matmuls: must agree to bf16 output rounding;
  * F.linear on the dequantized weight (weight-only FP8): must agree within the activation-quantization error;
and runs `Fp8Experts` against dequantized experts. Prints one JSON line per check and a summary; timings use
CUDA events (median of 20 runs) for the FP8 path, the dequantization path and a bf16 F.linear.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import model.quant as quant  # noqa: E402
from model.moe import Experts  # noqa: E402
from model.quant import (  # noqa: E402
    Fp8Experts,
    Fp8Linear,
    dequantize_fp8_block,
    quantize_activation_per_token_group,
)

# (N, K): 30B-A3B q_proj / o_proj / expert down_proj (K/128 = 6, not a multiple of 4), 8B MLP up / down,
# 235B expert gate
SHAPES = [(4096, 2048), (2048, 4096), (2048, 768), (12288, 4096), (4096, 12288), (1536, 4096)]
TOKENS = [1, 16, 256, 2048]


def w8a8_reference(x: torch.Tensor, layer: Fp8Linear) -> torch.Tensor:
    """What the block-scaled GEMM computes: dequantized activations (per 128-group) times dequantized weights, fp32."""
    xq, xs = quantize_activation_per_token_group(x)
    m, k = x.shape
    xd = (xq.float().view(m, k // 128, 128) * xs.unsqueeze(-1)).view(m, k)
    return xd @ dequantize_fp8_block(layer.weight, layer.weight_scale_inv, torch.float32).T


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-30)).item()


def timed(fn, device: torch.device, reps: int = 20) -> float:
    fn()
    if device.type != "cuda":
        t = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            t.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(t)
    torch.cuda.synchronize(device)
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="fewer shapes and token counts")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine, or pass --device cpu for a dry run", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    shapes, tokens = (SHAPES[:2], TOKENS[:2]) if args.quick or device.type == "cpu" else (SHAPES, TOKENS)
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device)}
    if device.type == "cuda":
        info.update(name=torch.cuda.get_device_name(device), capability=torch.cuda.get_device_capability(device))
    print(json.dumps({"info": info}), flush=True)

    failures = []
    g = torch.Generator(device="cpu").manual_seed(0)
    for n, k in shapes:
        w = torch.randn(n, k, generator=g) * 0.02
        layer = Fp8Linear.from_float(w.to(device=device, dtype=torch.bfloat16))
        w_deq = dequantize_fp8_block(layer.weight, layer.weight_scale_inv, torch.bfloat16)
        for m in tokens:
            x = torch.randn(m, k, generator=g).to(device=device, dtype=torch.bfloat16)
            fast_path = quant._scaled_mm_supported(x, layer.weight, layer.block)
            y = layer(x)
            fast_path = fast_path and quant._SCALED_MM_STATE["disabled"] is None
            ref_w8a8 = w8a8_reference(x, layer)
            ref_weight_only = F.linear(x, w_deq)
            row = {"N": n, "K": k, "M": m, "path": "scaled_mm" if fast_path else "dequant",
                   "rel_err_vs_w8a8_math": rel_err(y, ref_w8a8), "rel_err_vs_dequant_linear": rel_err(y, ref_weight_only),
                   "max_abs_vs_w8a8_math": (y.float() - ref_w8a8).abs().max().item()}
            # scaled_mm must reproduce the block-scaled arithmetic up to bf16 output rounding; the dequant
            # path is weight-only, so it matches F.linear on the dequantized weight instead
            ok = (row["rel_err_vs_w8a8_math"] < 1e-2 if fast_path else row["rel_err_vs_dequant_linear"] < 1e-2)
            ok = ok and row["rel_err_vs_dequant_linear"] < 0.06 and torch.isfinite(y).all().item()
            row["ok"] = bool(ok)
            if m == tokens[-1]:
                row["ms_fp8_layer"] = timed(lambda: layer(x), device)
                row["ms_dequant_path"] = timed(lambda: quant._dequant_linear(x, layer.weight, layer.weight_scale_inv,
                                                                             None, layer.block), device)
                row["ms_bf16_linear"] = timed(lambda: F.linear(x, w_deq), device)
            print(json.dumps(row), flush=True)
            if not ok:
                failures.append(row)
    if device.type == "cuda" and quant._SCALED_MM_STATE["disabled"] is not None:
        print(json.dumps({"scaled_mm_disabled_because": quant._SCALED_MM_STATE["disabled"]}), flush=True)

    # grouped FP8 experts (235B-like expert, 8 experts, uneven token counts incl. an empty expert)
    e, h, i = 8, 4096 if device.type == "cuda" else 512, 1536 if device.type == "cuda" else 256
    gate_up = (torch.randn(e, 2 * i, h, generator=g) * 0.02).to(device=device, dtype=torch.bfloat16)
    down = (torch.randn(e, h, i, generator=g) * 0.02).to(device=device, dtype=torch.bfloat16)
    fp8 = Fp8Experts.from_float(gate_up, down)
    ref = Experts(e, h, i, dtype=torch.bfloat16, device=device)
    with torch.no_grad():
        gs, us = fp8.gate_up_proj_scale_inv.chunk(2, dim=1)
        ref.gate_up_proj.copy_(torch.cat([dequantize_fp8_block(fp8.gate_up_proj[:, :i], gs, torch.bfloat16),
                                          dequantize_fp8_block(fp8.gate_up_proj[:, i:], us, torch.bfloat16)], 1))
        ref.down_proj.copy_(dequantize_fp8_block(fp8.down_proj, fp8.down_proj_scale_inv, torch.bfloat16))
        counts = [37, 0, 5, 120, 1, 64, 9, 20]
        x = torch.randn(sum(counts), h, generator=g).to(device=device, dtype=torch.bfloat16)
        err = rel_err(fp8(x, counts), ref(x, counts))
    row = {"check": "Fp8Experts vs dequantized Experts", "E": e, "H": h, "I": i, "rel_err": err, "ok": err < 0.08}
    print(json.dumps(row), flush=True)
    if not row["ok"]:
        failures.append(row)
    print(json.dumps({"summary": "FAIL" if failures else "OK", "failures": len(failures)}), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
