"""A small in-process cache: each entry for ttl_s, the oldest dropped past max_entries,
due for a refresh in its last refresh_ahead_s; and a single-flight guard, so that one key
is fetched once at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(
        self, ttl_s: float, max_entries: int = 10_000, refresh_ahead_s: float = 0.0
    ) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._refresh_ahead_s = refresh_ahead_s
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def refresh_due(self, key: K) -> bool:
        """Whether the entry is in its last refresh_ahead_s: fetched again now, it is
        replaced before it expires, and nobody waits for it."""
        entry = self._entries.get(key)
        return entry is not None and entry[0] - time.monotonic() < self._refresh_ahead_s

    def put(self, key: K, value: V) -> None:
        if self._ttl_s <= 0:
            return
        if key not in self._entries and len(self._entries) >= self._max_entries:
            # Dicts keep insertion order: drop the oldest.
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (time.monotonic() + self._ttl_s, value)


class SingleFlight(Generic[K, V]):
    """One call at a time per key: callers asking while it runs share its outcome.

    A cache entry expiring under load would otherwise send every waiting payment to the
    ISP at once for the same answer."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._running)

    async def run(self, key: K, call: Callable[[], Awaitable[V]]) -> V:
        # A caller that goes away (its client hung up) leaves the call to the others.
        return await asyncio.shield(self.start(key, call))

    def start(self, key: K, call: Callable[[], Awaitable[V]]) -> asyncio.Future[V]:
        """The call running for key, started now if none is: a caller may leave it to run."""
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(call())
            self._running[key] = running
            running.add_done_callback(lambda done: self._finished(key, done))
        return running

    def _finished(self, key: K, done: asyncio.Future[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved here, so an outcome nobody awaited is not logged
