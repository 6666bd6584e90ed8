"""Per-request sampling over a step's logits: penalties, the request's token constraint, then generate()'s
`next_tokens` (temperature, top-k, top-p, seeded generator). Plain greedy rows are one batched argmax."""

from __future__ import annotations

import torch
from torch import Tensor

from model.engine.scheduler import Sequence
from model.generate import next_tokens


def prepare_penalties(seq: Sequence, vocab: int, device: torch.device) -> None:
    """Allocate the [V] bookkeeping a request's penalties need (once, at its first sample)."""
    s = seq.request.sampling
    if s.repetition_penalty != 1.0 and seq.seen is None:
        seq.seen = torch.zeros(vocab, dtype=torch.bool, device=device)
        seq.seen[torch.tensor(seq.tokens, device=device)] = True
    if (s.presence_penalty != 0.0 or s.frequency_penalty != 0.0) and seq.counts is None:
        seq.counts = torch.zeros(vocab, dtype=torch.float32, device=device)
        out = seq.output_ids
        if out:
            seq.counts.index_add_(0, torch.tensor(out, device=device), torch.ones(len(out), device=device))


def sample(seqs: list[Sequence], logits: Tensor) -> list[int]:
    """logits [n, V] fp32 (row i belongs to seqs[i]) -> one token id per sequence."""
    out: list[int | None] = [None] * len(seqs)
    greedy = [i for i, q in enumerate(seqs) if q.request.sampling.plain_greedy and q.request.constraint is None]
    if greedy:
        # the common case, every row greedy, reads the logits in place: a row gather copies [n, V] first
        picked = (logits if len(greedy) == len(seqs) else logits[greedy]).argmax(-1).tolist()
        for i, t in zip(greedy, picked):
            out[i] = t
    V = logits.shape[-1]
    for i, seq in enumerate(seqs):
        if out[i] is not None:
            continue
        s = seq.request.sampling
        prepare_penalties(seq, V, logits.device)
        row = logits[i].clone()
        if s.frequency_penalty != 0.0:
            row -= s.frequency_penalty * seq.counts
        if seq.request.constraint is not None:
            seq.request.constraint.mask_logits(row)
        seen = seq.seen[None] if seq.seen is not None else None
        generated = (seq.counts > 0)[None] if seq.counts is not None else None
        out[i] = int(next_tokens(row[None], s, seen, generated, seq.generator)[0])
    return out


def record(seq: Sequence, token: int) -> None:
    """Book a sampled token into the request's penalty state and constraint."""
    if seq.seen is not None:
        seq.seen[token] = True
    if seq.counts is not None:
        seq.counts[token] += 1
    if seq.request.constraint is not None:
        seq.request.constraint.advance(token)
