"""The token buckets of bhuktani.ratelimit with a clock driven by hand: refill, burst,
Retry-After's rounding, the memory bound, and the shared bucket's leases on SQLite and
PostgreSQL (the limit holds across processes because every lease comes from one row)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from prometheus_client import REGISTRY

from bhuktani.api.errors import body_of, code_of, headers_of, status_of
from bhuktani.errors import (
    Refusal,
    TokenMissing,
    TokenRevoked,
    TokenUnknown,
    rate_limited,
    retry_after_s,
)
from bhuktani.merchants.service import Principal
from bhuktani.ratelimit import Limits, trips
from bhuktani.ratelimit.addresses import AddressLimiter, address_key
from bhuktani.ratelimit.bucket import BucketTable, Limit, TokenBucket
from bhuktani.ratelimit.merchants import LEASE_S, MerchantLimiter, lease_size
from bhuktani.store import Database
from tests.support import new_merchant


class Clock:
    def __init__(self, now_s: float = 1000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def wall_ms(self) -> int:
        return int(self.now_s * 1000)


def test_a_bucket_gives_its_burst_at_once_then_nothing() -> None:
    bucket = TokenBucket.full(Limit(per_s=5, burst=10), 0.0)
    assert [bucket.take(0.0) for _ in range(11)] == [True] * 10 + [False]


def test_a_bucket_refills_at_its_rate_and_never_past_its_burst() -> None:
    bucket = TokenBucket.full(Limit(per_s=5, burst=10), 0.0)
    for _ in range(10):
        assert bucket.take(0.0)
    assert not bucket.take(0.1)  # half a token
    assert bucket.take(0.2)  # one token: 0.2 s at 5 a second
    assert not bucket.take(0.2)
    assert bucket.wait_s(0.2) == pytest.approx(0.2)
    assert bucket.is_full(100.0)
    assert bucket.tokens == 10


def test_a_clock_read_late_does_not_run_the_bucket_back() -> None:
    bucket = TokenBucket.full(Limit(per_s=1, burst=1), 10.0)
    assert bucket.take(10.0)
    assert not bucket.take(9.0)
    assert bucket.updated_s == 10.0


@pytest.mark.parametrize(
    ("wait_s", "header"),
    [(0.0, 1), (0.001, 1), (0.2, 1), (1.0, 1), (1.0000000001, 1), (1.01, 2), (59.5, 60)],
)
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(
    wait_s: float, header: int
) -> None:
    assert retry_after_s(wait_s) == header


def test_a_rate_limited_refusal_is_the_1022_envelope_with_its_retry_after() -> None:
    error = rate_limited(1.2, "Over 5 requests a second")
    assert isinstance(error, Refusal)
    assert status_of(error) == 429
    assert headers_of(error) == {"Retry-After": "2"}
    assert body_of(error) == {
        "status": False,
        "state": "Error",
        "error_code": "1022",
        "error": "rate_limited",
        "message": "Too many requests",
        "details": "Over 5 requests a second; retry after 2 s",
        "error_data": {},
    }


def test_the_table_forgets_buckets_that_filled_up_again() -> None:
    clock = Clock(0.0)
    table: BucketTable[str] = BucketTable(Limit(1, 2), max_entries=100, clock=clock)
    table.take("a")
    assert len(table) == 1
    clock.now_s = 10.0  # "a" is full again: it equals a new bucket
    table.take("b")
    assert len(table) == 1


def test_the_table_never_holds_more_than_its_cap_however_many_keys_come() -> None:
    clock = Clock(0.0)
    table: BucketTable[str] = BucketTable(Limit(1, 5), max_entries=1000, clock=clock)
    for i in range(20_000):
        table.take(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
        assert len(table) <= 1000
    assert len(table) == 1000
    # The most recent keys are the ones kept.
    assert table.wait_s("10.0.78.31") == 0.0  # key 19,999 kept four of five tokens


def test_an_address_is_refused_once_its_failures_pass_the_burst_and_let_in_after_a_token() -> None:
    clock = Clock(0.0)
    addresses = AddressLimiter(Limit(per_s=1, burst=3), clock=clock)
    for _ in range(3):
        assert addresses.wait_s("192.0.2.1") == 0.0
        addresses.failed("192.0.2.1")
    assert addresses.wait_s("192.0.2.1") == pytest.approx(1.0)
    assert addresses.wait_s("192.0.2.2") == 0.0  # another address is not touched
    clock.now_s = 1.0
    assert addresses.wait_s("192.0.2.1") == 0.0


def test_ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    assert address_key("::ffff:192.0.2.9") == "192.0.2.9"
    assert address_key("192.0.2.9") == "192.0.2.9"
    assert address_key("unknown") == "unknown"


@pytest.mark.parametrize(
    ("per_s", "burst", "size"),
    [(5, 10, 1), (100, 200, 10), (1000, 2000, 100), (1000, 100, 10), (1, 1, 1), (50, 1000, 5)],
)
def test_a_lease_is_a_tenth_of_the_rate_and_at_most_a_tenth_of_the_burst(
    per_s: int, burst: int, size: int
) -> None:
    assert lease_size(Limit(per_s, burst)) == size


async def test_the_shared_bucket_gives_its_burst_then_its_rate(db: Database) -> None:
    merchant = await new_merchant(db)
    clock = Clock()
    limiter = MerchantLimiter(db, clock=clock, wall_ms=clock.wall_ms)
    key = (merchant.merchant_id, "test")
    limit = Limit(per_s=5, burst=10)
    waits = [await limiter.admit(key, limit) for _ in range(12)]
    assert waits[:10] == [0.0] * 10
    assert waits[10] == pytest.approx(0.2) and waits[11] == pytest.approx(0.2)
    clock.now_s += 0.2
    assert await limiter.admit(key, limit) == 0.0
    assert await limiter.admit(key, limit) > 0


async def test_two_processes_leasing_from_one_row_share_one_limit(db: Database) -> None:
    """Two limiters are two processes: together they admit the burst and the refill, not
    twice that, whatever the interleaving."""
    merchant = await new_merchant(db)
    clock = Clock()
    one = MerchantLimiter(db, clock=clock, wall_ms=clock.wall_ms)
    two = MerchantLimiter(db, clock=clock, wall_ms=clock.wall_ms)
    key = (merchant.merchant_id, "live")
    limit = Limit(per_s=100, burst=200)
    admitted = 0
    for _ in range(20):  # 1 s in steps of 50 ms, 60 requests a step to each
        waits = await asyncio.gather(
            *(limiter.admit(key, limit) for limiter in (one, two) for _ in range(60))
        )
        admitted += sum(1 for w in waits if w == 0.0)
        clock.now_s += 0.05
    assert admitted <= 200 + 100 * 1.0
    # Leases idle in one process are the only tokens lost: at most a lease each a step.
    assert admitted >= 200 + 100 * 0.95 - 2 * lease_size(limit) * 20


async def test_concurrent_requests_of_one_process_are_admitted_exactly(db: Database) -> None:
    merchant = await new_merchant(db)
    clock = Clock()
    limiter = MerchantLimiter(db, clock=clock, wall_ms=clock.wall_ms)
    key = (merchant.merchant_id, "test")
    waits = await asyncio.gather(*(limiter.admit(key, Limit(5, 10)) for _ in range(50)))
    assert sum(1 for w in waits if w == 0.0) == 10
    assert all(0 < w <= 0.2 + 1e-9 for w in waits if w != 0.0)


async def test_tokens_leased_and_left_unspent_expire(db: Database) -> None:
    merchant = await new_merchant(db)
    clock = Clock()
    limiter = MerchantLimiter(db, clock=clock, wall_ms=clock.wall_ms)
    key = (merchant.merchant_id, "test")
    limit = Limit(per_s=1000, burst=1000)
    assert await limiter.admit(key, limit) == 0.0  # leased 100, spent 1
    clock.now_s += LEASE_S
    other = MerchantLimiter(db, clock=clock, wall_ms=clock.wall_ms)
    for _ in range(1000):
        assert await other.admit(key, limit) == 0.0  # the row refilled while the lease lay
    # The first process's 99 leased tokens are gone: it must lease anew from the row,
    # which the other emptied (2 tokens refilled at most meanwhile: none in this clock).
    assert await limiter.admit(key, limit) > 0


async def test_an_empty_bucket_refuses_from_memory_without_asking_the_database(
    db: Database,
) -> None:
    merchant = await new_merchant(db)
    clock = Clock()
    limiter = MerchantLimiter(db, clock=clock, wall_ms=clock.wall_ms)
    key = (merchant.merchant_id, "test")
    for _ in range(10):
        await limiter.admit(key, Limit(5, 10))
    assert await limiter.admit(key, Limit(5, 10)) > 0
    await db.close()  # any statement now would fail
    for _ in range(1000):
        assert await limiter.admit(key, Limit(5, 10)) > 0


async def test_a_new_limit_drops_what_was_leased_under_the_old_one(db: Database) -> None:
    merchant = await new_merchant(db)
    clock = Clock()
    limiter = MerchantLimiter(db, clock=clock, wall_ms=clock.wall_ms)
    key = (merchant.merchant_id, "test")
    assert await limiter.admit(key, Limit(100, 200)) == 0.0  # leased 10, spent 1
    smaller = Limit(1, 3)
    waits = [await limiter.admit(key, smaller) for _ in range(5)]
    assert waits[:3] == [0.0] * 3  # the row, capped at the new burst
    assert waits[3] == pytest.approx(1.0) and waits[4] == pytest.approx(1.0)


def _refusals(reason: str) -> float:
    value = REGISTRY.get_sample_value("bhuktani_rate_limited_total", {"reason": reason})
    return value or 0.0


class Recorded:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})


async def test_refusals_are_counted_each_and_logged_once_per_bucket_per_interval(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = Recorded()
    monkeypatch.setattr(trips, "log", recorded)
    merchant = await new_merchant(db)
    clock = Clock()
    limits = Limits(db, merchant_default=Limit(5, 10), auth_failures=Limit(1, 2), clock=clock)
    limits.merchants = MerchantLimiter(db, clock=clock, wall_ms=clock.wall_ms)
    principal = Principal(merchant.merchant_id, "test", "all")
    before = _refusals("merchant")
    refused = 0
    for _ in range(5010):
        try:
            await limits.admit(principal)
        except Refusal as error:
            assert code_of(error) == "1022" and status_of(error) == 429
            refused += 1
    assert refused == 5000
    assert _refusals("merchant") - before == 5000
    assert len(recorded.lines) == 1, recorded.lines
    line = recorded.lines[0]
    assert line["event"] == "rate_limited" and line["reason"] == "merchant"
    assert line["merchant_id"] == merchant.merchant_id and line["env"] == "test"
    assert (line["per_s"], line["burst"], line["refused"]) == (5, 10, 1)
    # The next interval: the bucket is full again, and its first refusal is logged with
    # the refusals kept quiet since the last line.
    clock.now_s += trips.LOG_EVERY_S
    for _ in range(500):
        with contextlib.suppress(Refusal):
            await limits.admit(principal)
    assert [line["refused"] for line in recorded.lines] == [1, 4999 + 1]


def test_an_auth_refusal_counts_against_its_address_but_a_missing_token_does_not() -> None:
    clock = Clock(0.0)

    class NoDatabase:
        dialect = "sqlite"

    limits = Limits(
        NoDatabase(),  # type: ignore[arg-type]
        merchant_default=Limit(5, 10),
        auth_failures=Limit(1, 2),
        clock=clock,
    )
    for _ in range(5):
        limits.check_address("192.0.2.1")
        limits.auth_failed("192.0.2.1", TokenMissing("no token"))
    limits.auth_failed("192.0.2.1", TokenUnknown("Token not found"))
    limits.auth_failed("192.0.2.1", TokenRevoked("The token was revoked"))
    with pytest.raises(Refusal) as refused:
        limits.check_address("192.0.2.1")
    assert code_of(refused.value) == "1022"
    assert headers_of(refused.value) == {"Retry-After": "1"}
    limits.check_address("192.0.2.2")
