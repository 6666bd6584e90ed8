"""What callers hand the engine (`EngineRequest`: prompt ids, images/videos, sampling options, an optional token
constraint) and what they get back (`EngineOutput` deltas), plus the incremental detokenizer."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

from torch import Tensor

from model.generate import SamplingParams

FinishReason = Literal["stop", "length", "abort", "error"]


class TokenConstraint(Protocol):
    """Grammar-constrained decoding (model/constraints.py implements it): one object per request."""

    def mask_logits(self, logits: Tensor) -> None: ...   # logits [V] fp32, in place: disallowed ids -> -inf
    def advance(self, token_id: int) -> None: ...        # called with every sampled token
    def is_finished(self) -> bool: ...                   # the grammar is complete (eos allowed)


@dataclass(eq=False)
class MultiModalItem:
    """One image, or one video, of a prompt: its pixel rows, grid, content hash and where its tokens sit."""

    kind: Literal["image", "video"]
    hash: bytes                   # content hash of (kind, grid, pixel rows): the encoder-cache key
    pixel_values: Tensor          # [t*h*w, C*tp*p*p] float32 (processor output)
    grid_thw: Tensor              # [1, 3] int64
    offsets: Tensor               # [n_embeds] int64: prompt positions of this item's placeholder tokens, in order

    @property
    def num_embeds(self) -> int:
        return int(self.offsets.numel())


@dataclass
class SamplingOptions(SamplingParams):
    """generate()'s sampling parameters plus the per-request stopping rules of a serving API."""

    frequency_penalty: float = 0.0       # OpenAI semantics: minus penalty * count of the token in the output
    max_tokens: int = 16
    stop: list[str] = field(default_factory=list)        # stop strings (not included in the text)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    seed: int | None = None
    skip_special_tokens: bool = True

    def check(self) -> "SamplingOptions":
        super().check()
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError("stop strings must be non-empty strings")
        return self

    @property
    def plain_greedy(self) -> bool:
        return (self.temperature == 0 and self.repetition_penalty == 1.0 and self.presence_penalty == 0.0
                and self.frequency_penalty == 0.0)


_ids = itertools.count()


@dataclass(eq=False)
class EngineRequest:
    prompt_token_ids: list[int]
    mm_items: list[MultiModalItem] = field(default_factory=list)
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    constraint: TokenConstraint | None = None
    request_id: str = ""
    arrival_time: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        if not self.request_id:
            self.request_id = f"req-{next(_ids)}"


@dataclass
class RequestMetrics:
    arrival: float
    first_scheduled: float | None = None
    first_token: float | None = None
    finished: float | None = None


@dataclass
class EngineOutput:
    """One delta of a request: the tokens and text produced since the last one; the last has `finished`."""

    request_id: str
    token_ids: list[int]
    text: str
    finished: bool = False
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0            # prompt tokens served from the prefix cache
    completion_tokens: int = 0        # total so far
    error: str | None = None
    metrics: RequestMetrics | None = None   # on the final output


class Detokenizer:
    """Token ids -> text deltas; holds back bytes of an unfinished UTF-8 character (vLLM/TGI's offsets)."""

    def __init__(self, tokenizer, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = []
        self.prefix = 0       # ids[prefix:read] were decoded last time as the context of the next delta
        self.read = 0
        self.text = ""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip)

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix:self.read])
        now = self._decode(self.ids[self.prefix:])
        if len(now) > len(before) and not now.endswith("\ufffd"):
            delta = now[len(before):]
            self.prefix, self.read = self.read, len(self.ids)
            self.text += delta
            return delta
        return ""

    def flush(self) -> str:
        """What is still held back (an incomplete character at the end)."""
        before = self._decode(self.ids[self.prefix:self.read])
        now = self._decode(self.ids[self.prefix:])
        delta = now[len(before):]
        self.prefix = self.read = len(self.ids)
        self.text += delta
        return delta
