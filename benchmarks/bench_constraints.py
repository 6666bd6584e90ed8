"""Grammar-constrained decoding (model/constraints.py): valid-action rate and per-token overhead, measured in
one run against references from the same run.

    python benchmarks/bench_constraints.py [--rows 200] [--batch 50] [--max-new-tokens 320]

Builds a tiny random Qwen3-VL checkpoint whose tokenizer is the real Qwen BPE (tests/qwen_tokenizer.py, from
qwen-agent's qwen.tiktoken) and prints:

* valid rate: replies sampled at temperature 1.0 that parse as an action (agent.parsing), constrained vs not;
* per-token constraint cost (mask + advance, llguidance) against the same run's decode step of the tiny
  model, and against one lm_head product of Qwen3-VL-2B's shape (hidden 2048 x vocab 151936), the least a
  real model's CPU decode step costs;
* the same grammar's mask cost in xgrammar, when it is installed (not a dependency), on a real reply.
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

REPLY = ('Action: Click the search bar.\n<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", '
         '"coordinate": [447, 81]}}\n</tool_call>')


def timed_constraints(constraints):
    """Wrap each constraint's mask/advance to add their time to one counter: (wrapped, counter dict)."""
    spent = {"s": 0.0, "calls": 0}

    class Timed:
        def __init__(self, c):
            self.c = c

        def mask_logits(self, logits):
            t = time.perf_counter()
            self.c.mask_logits(logits)
            spent["s"] += time.perf_counter() - t
            spent["calls"] += 1

        def advance(self, token_id):
            t = time.perf_counter()
            self.c.advance(token_id)
            spent["s"] += time.perf_counter() - t

        def is_finished(self):
            return self.c.is_finished()

    return [Timed(c) for c in constraints], spent


def main(argv=None) -> int:
    import torch

    import tiny_checkpoints
    from agent.parsing import parse_response
    from model import Qwen3VL
    from model.constraints import ToolCallGrammar, computer_use_schema

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--max-new-tokens", type=int, default=320)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    with tempfile.TemporaryDirectory() as tmp:
        path = tiny_checkpoints.save_checkpoint(Path(tmp) / "ckpt", tied=True, tokenizer="qwen_bpe")
        model = Qwen3VL.from_pretrained(str(path), dtype=torch.float32)
        model.preprocessor  # loaded while the folder exists
    tok, V, eos = model.preprocessor.tokenizer, model.config.text.vocab_size, model.eos_token_ids
    t = time.perf_counter()
    grammar = ToolCallGrammar(tok, V, eos, max_thought_chars=40, max_text_chars=24, max_keys=3, max_key_chars=8)
    print(f"grammar for the Qwen BPE ({len(tok)} tokens, vocab {V}): {time.perf_counter() - t:.2f} s (once per tokenizer)")
    ids = model.preprocessor([{"role": "user", "content": [{"type": "text", "text": "Open the settings"}]}])["input_ids"]

    def run(constrained: bool, rows: int, max_new: int):
        valid = tokens = 0
        spent_s = steps_s = 0.0
        for seed in range(0, rows, args.batch):
            n = min(args.batch, rows - seed)
            cons, spent = timed_constraints([grammar.constraint() for _ in range(n)]) if constrained else (None, None)
            out = model.generate(ids.expand(n, -1).contiguous(), max_new_tokens=max_new, temperature=1.0, seed=seed,
                                 constraints=cons)
            steps_s += model.timings["decode_s"]
            for row in out.tolist():
                ended = any(x in eos for x in row)
                text = model.preprocessor.decode([x for x in row if x not in eos])
                valid += ended and parse_response(text).error is None
                tokens += sum(x != model.config.pad_token_id for x in row)
            if spent:
                spent_s += spent["s"]
        return valid, tokens, spent_s, steps_s

    valid, tokens, spent_s, decode_s = run(True, args.rows, args.max_new_tokens)
    free_valid, _, _, _ = run(False, args.rows, 64)
    print(f"valid actions at temperature 1.0: constrained {valid}/{args.rows} ({100 * valid / args.rows:.1f}%), "
          f"unconstrained {free_valid}/{args.rows} ({100 * free_valid / args.rows:.1f}%)")
    per_token = spent_s / max(tokens, 1)

    # references from this run: the tiny model's decode step (batch 1) and a 2B-shaped lm_head product
    model.generate(ids, max_new_tokens=33, temperature=0.0)
    tiny_step = model.timings["decode_s"] / max(model.timings["decode_steps"], 1)
    h = torch.randn(1, 2048)
    w = torch.randn(V, 2048)
    reps = []
    for _ in range(5):
        t = time.perf_counter()
        h @ w.T
        reps.append(time.perf_counter() - t)
    head_2b = statistics.median(reps)
    print(f"constraint per token (mask + advance, llguidance): {1000 * per_token:.3f} ms over {tokens} tokens")
    print(f"  / tiny-model decode step (batch 1): {per_token / tiny_step:.2f}x  ({1000 * tiny_step:.2f} ms)")
    print(f"  / one 2B-shaped lm_head product:    {per_token / head_2b:.2f}x  ({1000 * head_2b:.2f} ms)")

    # the two libraries on the same reply and grammar: mask computation only (bitmask fill), per token
    reply_ids = tok.encode(REPLY, add_special_tokens=False) + [eos[0]]
    c = grammar.constraint()
    fills = []
    for x in reply_ids:
        t = time.perf_counter()
        c.matcher.unsafe_compute_mask_ptr(c._words.data_ptr(), c._words.numel() * 4)
        fills.append(time.perf_counter() - t)
        c.advance(x)
    print(f"bitmask fill per token on a real reply ({len(reply_ids)} tokens): llguidance "
          f"mean {1000 * statistics.mean(fills):.3f} ms, median {1000 * statistics.median(fills):.3f} ms")
    try:
        import xgrammar as xgr
    except ImportError:
        print("xgrammar not installed: no comparison")
        return 0
    schema = computer_use_schema(1000, 24, 3, 8)
    schema.pop("x-guidance")
    t = time.perf_counter()
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=V, stop_token_ids=eos)
    compiler = xgr.GrammarCompiler(info, max_threads=2, cache_enabled=False)
    g = xgr.Grammar.concat(xgr.Grammar.from_regex(r"([^<]{1,40})?<tool_call>\n"),
                           xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False,
                                                        separators=(", ", ": ")),
                           xgr.Grammar.from_regex(r"\n</tool_call>"))
    compiled = compiler.compile_grammar(g)
    compile_s = time.perf_counter() - t
    matcher = xgr.GrammarMatcher(compiled)
    mask = xgr.allocate_token_bitmask(1, V)
    fills = []
    for x in reply_ids:
        t = time.perf_counter()
        matcher.fill_next_token_bitmask(mask, 0)
        fills.append(time.perf_counter() - t)
        assert matcher.accept_token(x)
    print(f"bitmask fill per token on a real reply: xgrammar mean {1000 * statistics.mean(fills):.3f} ms, "
          f"median {1000 * statistics.median(fills):.3f} ms; xgrammar tokenizer + compile {compile_s:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
