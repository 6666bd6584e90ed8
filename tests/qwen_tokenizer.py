"""The real Qwen2/Qwen3 byte-level BPE tokenizer, built offline from `qwen.tiktoken` (no Hub download).

The `qwen-agent` wheel on PyPI ships `qwen_agent/utils/qwen.tiktoken`: the 151,643 BPE ranks of the Qwen
tokenizer, rank == token id. A Hugging Face `Qwen2Tokenizer` built from them (merges recovered from the ranks
the way tiktoken applies them) gives the real token ids ("Hello world" -> [9707, 1879]) and passes
llama.cpp's pre-tokenizer check (`qwen2`), which the byte-level test tokenizer (tests/tiny_tokenizer.py)
does not. Special tokens sit at 151643..151668 as in the real checkpoints; the chat template and image
processor are tiny_tokenizer's.

Where the ranks come from, in order: an installed `qwen_agent` package, the cache folder
(~/.cache/qvl-agent/qwen.tiktoken), or the wheel fetched with `pip download --no-deps` (then cached).
"""

from __future__ import annotations

import base64
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from transformers import Qwen2Tokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from tiny_tokenizer import CHAT_TEMPLATE, FIRST_SPECIAL_ID, ImageOnlyQwen3VLProcessor, qwen2_tokenizer

QWEN_AGENT_WHEEL = "qwen-agent==0.0.34"
RANKS_IN_WHEEL = "qwen_agent/utils/qwen.tiktoken"
CACHE = Path(os.environ.get("QVL_CACHE", Path.home() / ".cache" / "qvl-agent"))


def ranks_file() -> Path:
    """Path of qwen.tiktoken (installed qwen_agent, else cached, else fetched from PyPI with pip)."""
    spec = importlib.util.find_spec("qwen_agent")
    if spec is not None and spec.submodule_search_locations:
        installed = Path(list(spec.submodule_search_locations)[0]) / "utils" / "qwen.tiktoken"
        if installed.is_file():
            return installed
    cached = CACHE / "qwen.tiktoken"
    if cached.is_file():
        return cached
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", QWEN_AGENT_WHEEL, "-d", tmp],
                       check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            cached.write_bytes(z.read(RANKS_IN_WHEEL))
    return cached


def load_ranks(path: Path) -> dict[bytes, int]:
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _merge_of(ranks: dict[bytes, int], token: bytes) -> tuple[bytes, bytes]:
    # tiktoken's BPE on `token` using only ranks below its own: the last merge it makes is the one that
    # creates the token, i.e. the HF merge rule (left, right)
    rank = ranks[token]
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best, best_rank = None, None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < rank and (best_rank is None or r < best_rank):
                best, best_rank = i, r
        if best is None:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    if len(parts) != 2:
        raise ValueError(f"qwen.tiktoken: token {token!r} (rank {rank}) is not a merge of two lower-ranked tokens")
    return parts[0], parts[1]


def build_tokenizer() -> Qwen2Tokenizer:
    """The real Qwen tokenizer (vocab 151,643 + the 26 special/added tokens at their real ids)."""
    ranks = load_ranks(ranks_file())
    if len(ranks) != FIRST_SPECIAL_ID:
        raise ValueError(f"qwen.tiktoken: expected {FIRST_SPECIAL_ID} ranks, found {len(ranks)}")
    byte_char = bytes_to_unicode()

    def text(b: bytes) -> str:
        return "".join(byte_char[c] for c in b)

    vocab = {text(t): r for t, r in ranks.items()}
    merges = [tuple(text(p) for p in _merge_of(ranks, t)) for t, r in sorted(ranks.items(), key=lambda kv: kv[1])
              if len(t) > 1]
    return qwen2_tokenizer(vocab, merges)


def save_processor(path: str | Path, min_pixels: int = 65536, max_pixels: int = 16777216) -> ImageOnlyQwen3VLProcessor:
    """Write the real tokenizer + the Hub's image-processor settings (pixel budget of the released models)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    ip = Qwen2VLImageProcessorPil(size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, patch_size=16,
                                  temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    proc = ImageOnlyQwen3VLProcessor(image_processor=ip, tokenizer=build_tokenizer(), chat_template=CHAT_TEMPLATE)
    proc.save_pretrained(str(path))
    ip.save_pretrained(str(path))
    return proc
