"""The real Qwen byte-level BPE tokenizer, built offline for tests and benchmarks.

The `qwen-agent` wheel ships ``qwen_agent/utils/qwen.tiktoken``: the 151,643 BPE ranks shared by Qwen,
Qwen2, Qwen2.5, Qwen3 and Qwen3-VL (regular tokens 0..151642). From the ranks we rebuild the merges the
way transformers' ``TikTokenConverter`` does (a merge (a, b) exists where a, b and a+b are all ranked; it
is ordered by the rank of a+b) and hand vocab + merges to ``Qwen2Tokenizer``, which sets Qwen's
pre-tokenizer regex, NFC normalizer and byte-level decoder. The special tokens are placed at the real ids
151643..151668 (tests/tiny_tokenizer.SPECIALS), so a checkpoint with the real 151,936-row vocabulary gets
the ids it has on the Hub. The chat template is tests/tiny_tokenizer's.

Building takes ~20 s on a loaded CI machine (the merge scan), so the result is kept in the system temp
folder (keyed by the ranks file's size and mtime) and loaded from there (~1 s) afterwards; `build_tokenizer()`
is also cached per process. `save_tokenizer(folder)` writes the Hub's file layout (tokenizer.json, ...).
Only the package's location is looked up: qwen_agent is never imported (it needs no dependencies here).
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import os
import tempfile
from pathlib import Path

from transformers import Qwen2Tokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from tiny_tokenizer import CHAT_TEMPLATE, FIRST_SPECIAL_ID, SPECIALS, ImageOnlyQwen3VLProcessor, qwen_tokenizer_from


def tiktoken_path() -> Path:
    """qwen_agent/utils/qwen.tiktoken of the installed qwen-agent package (FileNotFoundError without it)."""
    spec = importlib.util.find_spec("qwen_agent")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the qwen-agent package is not installed (pip install qwen-agent): it ships "
                                "qwen_agent/utils/qwen.tiktoken, the Qwen BPE ranks")
    path = Path(list(spec.submodule_search_locations)[0]) / "utils" / "qwen.tiktoken"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed qwen-agent package")
    return path


def load_ranks(path: Path | None = None) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in (path or tiktoken_path()).read_text(encoding="ascii").splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    byte_to_char = bytes_to_unicode()

    def text(b: bytes) -> str:
        return "".join(byte_to_char[x] for x in b)

    vocab = {text(t): r for t, r in ranks.items()}
    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            lr, rr = ranks.get(left), ranks.get(right)
            if lr is not None and rr is not None:
                merges.append((rank, lr, rr, left, right))
    merges.sort()
    return vocab, [(text(a), text(b)) for _, _, _, a, b in merges]


@functools.lru_cache(maxsize=1)
def build_tokenizer() -> Qwen2Tokenizer:
    source = tiktoken_path()
    stat = source.stat()
    cache = Path(tempfile.gettempdir()) / f"qvl-qwen-bpe-{stat.st_size}-{int(stat.st_mtime)}"
    if (cache / "tokenizer.json").exists():
        return Qwen2Tokenizer.from_pretrained(str(cache))
    tok = _build(source)
    tmp = Path(tempfile.mkdtemp(prefix=cache.name + ".", dir=cache.parent))
    tok.save_pretrained(str(tmp))
    try:
        os.replace(tmp, cache)  # atomic: concurrent test processes never see a half-written folder
    except OSError:  # another process got there first
        pass
    return tok


def _build(source: Path) -> Qwen2Tokenizer:
    ranks = load_ranks(source)
    assert len(ranks) == FIRST_SPECIAL_ID, f"expected {FIRST_SPECIAL_ID} BPE ranks, found {len(ranks)}"
    vocab, merges = vocab_and_merges(ranks)
    vocab.update({t: FIRST_SPECIAL_ID + j for j, t in enumerate(SPECIALS)})
    return qwen_tokenizer_from(vocab, merges)


def save_tokenizer(folder: str | Path) -> Qwen2Tokenizer:
    tok = build_tokenizer()
    tok.save_pretrained(str(folder))
    return tok


def save_processor(path: str | Path, min_pixels: int = 65536, max_pixels: int = 16777216) -> ImageOnlyQwen3VLProcessor:
    """Write the real tokenizer + the Hub's image-processor settings (pixel budget of the released models)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    ip = Qwen2VLImageProcessorPil(size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, patch_size=16,
                                  temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    proc = ImageOnlyQwen3VLProcessor(image_processor=ip, tokenizer=build_tokenizer(), chat_template=CHAT_TEMPLATE)
    proc.save_pretrained(str(path))
    ip.save_pretrained(str(path))
    return proc
