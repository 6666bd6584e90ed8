"""Vision-encoder outputs (main features + every DeepStack level) keyed by image/video content hash.

Capacity counts embeddings (rows), as vLLM's encoder cache does. Entries used by a live request are pinned;
unpinned ones are evicted oldest first when a new entry needs room. An entry larger than the whole capacity is
still kept while it is in use (a request must be able to run), and dropped as soon as it is not."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor

Features = tuple[Tensor, list[Tensor]]     # main [n, H], DeepStack levels [n, H] each


class EncoderCache:
    def __init__(self, capacity_embeds: int):
        self.capacity = capacity_embeds
        self.entries: OrderedDict[bytes, Features] = OrderedDict()
        self.users: dict[bytes, set[str]] = {}
        self.size = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes, request_id: str) -> Features | None:
        features = self.entries.get(key)
        if features is None:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(key)
        self.users.setdefault(key, set()).add(request_id)
        return features

    def put(self, key: bytes, features: Features, request_id: str) -> None:
        n = features[0].shape[0]
        self._evict(n)
        self.entries[key] = features
        self.users.setdefault(key, set()).add(request_id)
        self.size += n

    def release(self, request_id: str) -> None:
        """The request is finished or preempted: its entries become evictable."""
        for key in [k for k, users in self.users.items() if request_id in users]:
            users = self.users[key]
            users.discard(request_id)
            if not users:
                del self.users[key]
        self._evict(0)

    def _evict(self, incoming: int) -> None:
        for key in list(self.entries):
            if self.size + incoming <= self.capacity:
                break
            if key in self.users:
                continue
            self.size -= self.entries.pop(key)[0].shape[0]
