"""How much of agent step k+1's prompt is a cached prefix of step k (its prompt + reply), for the trained sliding
4-screenshot window and the optional chunked window (agent/history.py), counted the way the engine's prefix cache
reuses it: whole 16-token blocks whose chained hash (tokens + image content hashes) matches.

    python benchmarks/bench_history.py [--steps 15] [--model PATH] [--block-size 16]

Screenshots are distinct 1280x720 pictures sized by the Hub's image processor budget (920 visual tokens each,
as for the real Qwen3-VL); replies are typical `Action: ...` + tool-call texts. Without --model the tiny test
checkpoint's tokenizer (one token per byte: text counts are ~3-4x a real BPE's) is used.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def screenshot(i: int):
    from PIL import Image

    rng = np.random.default_rng(i)
    a = np.full((720, 1280, 3), 230, dtype=np.uint8)
    a[:40] = rng.integers(0, 255, 3)
    a[100:600, 80 + 10 * i: 500 + 10 * i] = rng.integers(0, 255, (500, 420, 3), dtype=np.uint8)
    return Image.fromarray(a)


def reply(i: int) -> str:
    return (f"Action: Click the item number {i} in the list.\n<tool_call>\n"
            f'{{"name": "computer_use", "arguments": {{"action": "left_click", "coordinate": [{100 + 37 * i % 800}, '
            f'{200 + 53 * i % 600}]}}}}\n</tool_call>')


def measure(pre, config, window: str, steps: int, block_size: int) -> list[dict]:
    from agent.history import History
    from agent.parsing import parse_response
    from model.engine.block_pool import extend_block_hashes
    from model.engine.inputs import split_items

    history = History("Open the settings and turn on dark mode.", window=window)
    previous: list[bytes] = []      # block hashes of step k's prompt + reply
    rows = []
    for k in range(steps):
        messages = history.messages(screenshot(k))
        text, vision = pre.render(messages, add_generation_prompt=True)
        ids = pre.tokenizer(text, add_special_tokens=False)["input_ids"]
        items = split_items(ids, vision, config.image_token_id, config.video_token_id,
                            config.vision.spatial_merge_size)
        answer = reply(k)
        full = ids + pre.tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
        hashes: list[bytes] = []
        extend_block_hashes(hashes, full, items, block_size, len(full))
        reused = 0
        for a, b in zip(hashes, previous):
            if a != b:
                break
            reused += 1
        reused_tokens = min(reused * block_size, len(ids) - 1) if k else 0
        first_new_token = reused_tokens
        encoder_items = sum(1 for it in items if int(it.offsets[-1]) >= first_new_token)
        rows.append({"step": k + 1, "prompt_tokens": len(ids), "screenshots": len(items),
                     "reused_tokens": reused_tokens, "reused_fraction": reused_tokens / len(ids),
                     "images_not_in_prefix": encoder_items})
        previous = hashes
        history.add(screenshot(k), parse_response(answer))
    return rows


def summary(rows: list[dict]) -> dict:
    later = rows[1:]
    return {"mean_prompt_tokens": float(np.mean([r["prompt_tokens"] for r in rows])),
            "mean_screenshots": float(np.mean([r["screenshots"] for r in rows])),
            "computed_tokens": int(sum(r["prompt_tokens"] - r["reused_tokens"] for r in rows)),
            "mean_reused_fraction_after_step_1": float(np.mean([r["reused_fraction"] for r in later])),
            "images_to_encode_without_encoder_cache": int(sum(r["images_not_in_prefix"] for r in rows))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint folder whose tokenizer/processor to use")
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    from model.config import Qwen3VLConfig
    from model.preprocess import HUB_IMAGE_MAX_PIXELS, HUB_IMAGE_MIN_PIXELS, Preprocessor

    tmp = None
    folder = args.model
    if folder is None:
        sys.path.insert(0, str(REPO / "tests"))
        import tiny_checkpoints

        tmp = tempfile.TemporaryDirectory()
        folder = tiny_checkpoints.save_checkpoint(Path(tmp.name) / "tiny")
    pre = Preprocessor.from_pretrained(folder, min_pixels=HUB_IMAGE_MIN_PIXELS, max_pixels=HUB_IMAGE_MAX_PIXELS)
    config = Qwen3VLConfig.from_folder(Path(folder))
    result = {}
    for window in ("sliding", "chunked"):
        rows = measure(pre, config, window, args.steps, args.block_size)
        result[window] = {"steps": rows, "summary": summary(rows)}
    if tmp is not None:
        tmp.cleanup()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for window, r in result.items():
        print(f"{window} window")
        print("  step  prompt  shots  reused  fraction  images past the prefix")
        for row in r["steps"]:
            print(f"  {row['step']:4d}  {row['prompt_tokens']:6d}  {row['screenshots']:5d}  {row['reused_tokens']:6d}"
                  f"  {row['reused_fraction']:8.1%}  {row['images_not_in_prefix']:5d}")
        s = r["summary"]
        print(f"  mean prompt {s['mean_prompt_tokens']:.0f} tokens, {s['mean_screenshots']:.2f} screenshots; "
              f"reused {s['mean_reused_fraction_after_step_1']:.1%} of each prompt after step 1; "
              f"{s['computed_tokens']} tokens computed in all; "
              f"{s['images_to_encode_without_encoder_cache']} image encodings without an encoder cache")
    return 0


if __name__ == "__main__":
    sys.exit(main())
