"""The token bucket, and a table of them bounded in memory.

A bucket holds at most `burst` tokens and gains `per_s` a second; a request takes one.
Time is the caller's monotonic clock in seconds, so tests drive it by hand."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
Clock = Callable[[], float]


@dataclass(frozen=True)
class Limit:
    per_s: float
    burst: int

    def __post_init__(self) -> None:
        assert self.per_s > 0, self.per_s
        assert self.burst >= 1, self.burst

    @property
    def refill_s(self) -> float:
        """How long an empty bucket takes to be full again."""
        return self.burst / self.per_s


@dataclass
class TokenBucket:
    limit: Limit
    tokens: float
    updated_s: float

    @classmethod
    def full(cls, limit: Limit, now_s: float) -> TokenBucket:
        return cls(limit, float(limit.burst), now_s)

    def _refill(self, now_s: float) -> None:
        # A clock read earlier by another coroutine may arrive late: time never runs back.
        if now_s > self.updated_s:
            gained = (now_s - self.updated_s) * self.limit.per_s
            self.tokens = min(float(self.limit.burst), self.tokens + gained)
            self.updated_s = now_s
        assert 0.0 <= self.tokens <= self.limit.burst, self.tokens

    def take(self, now_s: float) -> bool:
        self._refill(now_s)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def wait_s(self, now_s: float) -> float:
        """Seconds until a token is there: 0 when one is there now."""
        self._refill(now_s)
        return max(0.0, (1.0 - self.tokens) / self.limit.per_s)

    def is_full(self, now_s: float) -> bool:
        """A full bucket is the same as no bucket: it may be forgotten."""
        self._refill(now_s)
        return self.tokens >= self.limit.burst


class BucketTable(Generic[K]):
    """Buckets by key, created full on first use, at most `max_entries` of them.

    Buckets that filled up again are forgotten (they equal a new one), and past the cap
    the one touched longest ago goes: keys an attacker makes up (addresses) cannot grow
    the table without bound. A forgotten bucket comes back full; with distinct keys an
    attacker has that anyway."""

    def __init__(self, limit: Limit, *, max_entries: int, clock: Clock) -> None:
        assert max_entries >= 1
        self.limit = limit
        self._max_entries = max_entries
        self._clock = clock
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def wait_s(self, key: K) -> float:
        """0 when the key may go on, else the seconds until it may; creates nothing."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.wait_s(self._clock())

    def take(self, key: K) -> bool:
        now_s = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room(now_s)
            bucket = TokenBucket.full(self.limit, now_s)
            self._buckets[key] = bucket
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now_s)

    def _make_room(self, now_s: float) -> None:
        # The front was touched longest ago. Dropping full buckets there keeps the table
        # to the keys active within a refill time; each call looks at a few at most.
        for _ in range(8):
            if not self._buckets:
                return
            key, oldest = next(iter(self._buckets.items()))
            if not oldest.is_full(now_s) and len(self._buckets) < self._max_entries:
                return
            del self._buckets[key]
        assert len(self._buckets) < self._max_entries
