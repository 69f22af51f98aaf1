"""A small in-process cache: each entry for ttl_s, the oldest dropped past max_entries."""

from __future__ import annotations

import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        if self._ttl_s <= 0:
            return
        if key not in self._entries and len(self._entries) >= self._max_entries:
            # Dicts keep insertion order: drop the oldest.
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (time.monotonic() + self._ttl_s, value)
