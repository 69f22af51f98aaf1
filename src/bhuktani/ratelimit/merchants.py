"""Each merchant's request rate, per environment, held across every process.

The bucket itself is a row of `rate_buckets`, refilled and drawn from by one atomic
statement. A process leases a few tokens at a time (a tenth of a second's rate, at most a
tenth of the burst: 10 at the default 100/s) and spends them from memory, so most requests
never reach the database for it (docs/DESIGN.md has what a lease costs). What the row never gave cannot be spent, so the processes together stay
within the limit; a lease unspent after LEASE_S is dropped, so tokens leased in a quiet
moment cannot add to a later burst. The cost is the other way: a lease idle in one
process is a few tokens the others may not have for up to LEASE_S.

While the row is empty the process remembers until when, and refuses without asking
again: a burst of 5,000 past the limit costs the database the few leases in flight."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from bhuktani.clock import now_ms
from bhuktani.ratelimit.bucket import Clock, Limit
from bhuktani.store import Database

LEASE_S = 1.0
LEASE_SHARE_OF_RATE = 0.1
LEASE_SHARE_OF_BURST = 0.1
# Rounds of leasing one request may wait through before it is refused: each round either
# gives it a token, finds the bucket empty, or was drained by requests that came first.
MAX_ROUNDS = 4
MAX_KEYS = 100_000

Key = tuple[int, str]  # merchant id, environment


def lease_size(limit: Limit) -> int:
    by_rate = math.ceil(limit.per_s * LEASE_SHARE_OF_RATE)
    return max(1, min(by_rate, int(limit.burst * LEASE_SHARE_OF_BURST)))


def _lease_sql(dialect: str) -> str:
    """Refill the row from its last update, grant up to $4 whole tokens, and return what
    is left and what was granted. $3 burst, $5 the caller's wall clock (ms), $6 tokens a
    second. A row not there yet is a full bucket. A clock behind the row's refills
    nothing: skew between hosts can only slow the refill, never speed it."""
    least, greatest = ("LEAST", "GREATEST") if dialect == "postgresql" else ("min", "max")

    def whole(x: str) -> str:
        # SQLite's CAST truncates, and x is never negative; PostgreSQL's would round.
        return f"FLOOR({x})" if dialect == "postgresql" else f"CAST({x} AS INTEGER)"

    burst = "CAST($3 AS DOUBLE PRECISION)"
    want = "CAST($4 AS BIGINT)"
    now = "CAST($5 AS BIGINT)"
    per_s = "CAST($6 AS DOUBLE PRECISION)"
    elapsed = f"{greatest}(0, {now} - b.updated_ms)"
    available = f"{least}({burst}, b.tokens + {elapsed} * {per_s} / 1000.0)"
    granted = f"{least}({want}, {whole(available)})"
    return (
        "INSERT INTO rate_buckets AS b (merchant_id, env, tokens, granted, updated_ms)"
        f" VALUES ($1, $2, {burst} - {least}({want}, {burst}), {least}({want}, {burst}), {now})"
        " ON CONFLICT (merchant_id, env) DO UPDATE SET"
        f" tokens = {available} - {granted},"
        f" granted = {granted},"
        f" updated_ms = {greatest}({now}, b.updated_ms)"
        " RETURNING tokens, granted"
    )


@dataclass
class _Lease:
    limit: Limit | None = None
    tokens: int = 0
    expires_s: float = 0.0
    empty_until_s: float = 0.0
    waiting: int = 0
    fetching: asyncio.Future[None] | None = None

    def idle(self, now_s: float) -> bool:
        return self.fetching is None and now_s >= max(self.expires_s, self.empty_until_s)


class MerchantLimiter:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = time.monotonic,
        wall_ms: Callable[[], int] = now_ms,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._db = db
        self._sql = _lease_sql(db.dialect)
        self._clock = clock
        self._wall_ms = wall_ms
        self._max_keys = max_keys
        self._leases: dict[Key, _Lease] = {}

    def __len__(self) -> int:
        return len(self._leases)

    async def admit(self, key: Key, limit: Limit) -> float:
        """0 when the request may go on (it took a token), else the seconds to wait."""
        lease = self._lease(key)
        if lease.limit != limit:
            # A new limit (set by the operator, seen at the next token check): what was
            # leased or learnt under the old one does not hold; the row caps at the new burst.
            lease.limit, lease.tokens, lease.empty_until_s = limit, 0, 0.0
        for _ in range(MAX_ROUNDS):
            now_s = self._clock()
            if lease.tokens > 0 and now_s < lease.expires_s:
                lease.tokens -= 1
                return 0.0
            if now_s < lease.empty_until_s:
                return lease.empty_until_s - now_s
            if lease.fetching is None:
                lease.fetching = asyncio.ensure_future(self._fetch(key, lease, limit))
                lease.fetching.add_done_callback(_retrieved)
            lease.waiting += 1
            try:
                await asyncio.shield(lease.fetching)
            finally:
                lease.waiting -= 1
        # Every round's tokens went to requests ahead of this one.
        return 1.0 / limit.per_s

    async def _fetch(self, key: Key, lease: _Lease, limit: Limit) -> None:
        try:
            want = min(limit.burst, max(lease_size(limit), lease.waiting))
            row = await self._db.once(
                self._sql, key[0], key[1], limit.burst, want, self._wall_ms(), limit.per_s
            )
            assert row is not None
            left, granted = float(row["tokens"]), int(row["granted"])
            assert 0 <= granted <= want, (granted, want)
            assert left >= 0.0, left
            now_s = self._clock()
            lease.tokens = granted
            lease.expires_s = now_s + LEASE_S
            if granted < want:
                # The row has less than one token left: none until it refills one.
                lease.empty_until_s = now_s + (1.0 - left) / limit.per_s
        finally:
            lease.fetching = None

    def _lease(self, key: Key) -> _Lease:
        lease = self._leases.get(key)
        if lease is None:
            if len(self._leases) >= self._max_keys:
                self._forget_idle()
            lease = self._leases[key] = _Lease()
        return lease

    def _forget_idle(self) -> None:
        now_s = self._clock()
        for key in [k for k, lease in self._leases.items() if lease.idle(now_s)]:
            del self._leases[key]
        while len(self._leases) >= self._max_keys:
            # All busy (never with real merchants): drop the oldest; its tokens are lost.
            del self._leases[next(iter(self._leases))]


def _retrieved(done: asyncio.Future[None]) -> None:
    # The waiters get the outcome; when all left (clients hung up), it is read here so
    # that a failed lease is not reported as never retrieved.
    if not done.cancelled():
        done.exception()
