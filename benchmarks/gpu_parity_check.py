"""GPU parity of the runtime with transformers on a tiny random checkpoint (run in a GPU session).

The CPU suite covers fp32 parity; on CUDA the runtime takes paths the CPU never exercises (varlen flash
attention for images of different sizes in bf16, cuBLAS kernels). This prints one JSON line per case with
logits max|Δ| and whether 32 greedy tokens agree, and exits 1 when fp32 parity fails (> 1e-3: TF32 and
kernel choice move fp32 a little on GPU) or bf16 drifts further from fp32 than transformers' own bf16.

    python benchmarks/gpu_parity_check.py                # needs CUDA; exits 2 without it
    python benchmarks/gpu_parity_check.py --device cpu   # dry run of the script itself
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import tiny_checkpoints  # noqa: E402
from tiny_tokenizer import build_processor  # noqa: E402

from model import Qwen3VL  # noqa: E402


def inputs(n_images: int, device: str) -> dict:
    proc = build_processor()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in ((70, 100), (130, 60))]
    msgs = [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": "Describe."}]}]
    prompt = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    out = proc(text=[prompt], images=images[:n_images] or None, return_tensors="pt")
    return {k: v.to(device) for k, v in out.items()}


def main() -> int:
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cuda"
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_parity_check: no CUDA device", file=sys.stderr)
        return 2
    from transformers import AutoModelForImageTextToText

    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        path = tiny_checkpoints.save_checkpoint(Path(tmp) / "dense")
        logits = {}
        for dtype in (torch.float32, torch.bfloat16):
            ours = Qwen3VL.from_pretrained(path, dtype=dtype, device=device)
            ref = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).to(device).eval()
            for n in (0, 1, 2):
                x = inputs(n, device)
                with torch.no_grad():
                    a = ours.logits(**x).float()
                    b = ref(**x).logits.float()
                    ta = ours.generate(**x, max_new_tokens=32, temperature=0.0)
                    tb = ref.generate(**x, max_new_tokens=32, do_sample=False)[:, x["input_ids"].shape[1]:]
                logits[(dtype, n, "ours")], logits[(dtype, n, "hf")] = a, b
                row = {"dtype": str(dtype), "images": n, "max_abs_diff": (a - b).abs().max().item(),
                       "tokens_equal": bool(torch.equal(ta.cpu(), tb.cpu()))}
                if dtype == torch.float32 and (row["max_abs_diff"] > 1e-3 or not row["tokens_equal"]):
                    failed = True
                print(json.dumps(row), flush=True)
            del ours, ref
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        for n in (0, 1, 2):  # bf16 must stay as close to fp32 as transformers' bf16 does
            ours_err = (logits[(torch.bfloat16, n, "ours")] - logits[(torch.float32, n, "hf")]).abs().max().item()
            hf_err = (logits[(torch.bfloat16, n, "hf")] - logits[(torch.float32, n, "hf")]).abs().max().item()
            ok = ours_err <= 1.5 * hf_err + 1e-3
            failed |= not ok
            print(json.dumps({"bf16_vs_fp32": n, "ours": ours_err, "transformers": hf_err, "ok": ok}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
