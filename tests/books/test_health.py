"""What waits for an operator, read from the database into /metrics' gauges: flagged
payments, the reconciler's backlog, callbacks pending, late and given up, merchants below
their low-balance threshold (books/health.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from bhuktani import metrics
from bhuktani.books import alerts, health
from bhuktani.clock import now_ms
from bhuktani.ledger.book import book_for
from bhuktani.merchants import service as merchants
from bhuktani.merchants.service import Principal
from bhuktani.payments import records
from bhuktani.store import Database, connect
from tests.payments.test_operator import flagged, open_held
from tests.support import KEY, arrownet_order


@pytest.fixture
async def own_db(own_db_url: str) -> AsyncIterator[Database]:
    database = await connect(own_db_url)
    yield database
    await database.close()


async def merchant(db: Database, callback_url: str | None = None) -> int:
    made = await merchants.create(
        db, "health", key=KEY, callback_url=callback_url, test_credits_paisa=100_000_00
    )
    return made.merchant_id


async def test_an_empty_gateway_has_nothing_waiting(own_db: Database) -> None:
    queues = await health.read(own_db, now_ms())
    assert queues == health.Queues(
        flagged={"test": 0, "live": 0},
        reconcile_overdue=0,
        callbacks={"pending": 0, "expired": 0, "overdue": 0},
        balances_low={"test": 0, "live": 0},
    )


async def test_flagged_payments_count_until_resolved_by_environment(own_db: Database) -> None:
    merchant_id = await merchant(own_db)
    made = await flagged(own_db, merchant_id)
    await open_held(own_db, merchant_id)  # held, not flagged

    assert (await health.read(own_db, now_ms())).flagged == {"test": 1, "live": 0}
    await own_db.once(
        "UPDATE payments SET state = 'Failed' WHERE id = $1 RETURNING id", made.payment_id
    )
    assert (await health.read(own_db, now_ms())).flagged == {"test": 0, "live": 0}


async def test_a_processing_payment_over_a_minute_late_is_the_reconcilers_backlog(
    own_db: Database,
) -> None:
    merchant_id = await merchant(own_db)
    at_ms = now_ms()
    for first_check_ms in (at_ms - health.OVERDUE_AFTER_MS - 1, at_ms - 1_000):
        await records.open_payment(
            book_for(own_db),
            Principal(merchant_id, "test", "all"),
            "arrownet",
            arrownet_order(merchant_id),
            f"late-{first_check_ms}",
            None,
            first_check_ms=first_check_ms,
        )

    assert (await health.read(own_db, at_ms)).reconcile_overdue == 1


async def test_callbacks_pending_late_and_given_up_are_counted(own_db: Database) -> None:
    merchant_id = await merchant(own_db, callback_url="https://merchant.example/hook")
    await alerts.set_threshold(own_db, merchant_id, "test", 200_000_00, operator="test")
    await alerts.check_once(own_db)  # queues one balance.low event
    at_ms = now_ms()
    assert (await health.read(own_db, at_ms)).callbacks == {
        "pending": 1,
        "expired": 0,
        "overdue": 0,
    }
    late_ms = at_ms + health.CALLBACK_OVERDUE_AFTER_MS + 60_000
    assert (await health.read(own_db, late_ms)).callbacks["overdue"] == 1

    await own_db.once("UPDATE callbacks SET status = 'expired' RETURNING id")
    assert (await health.read(own_db, at_ms)).callbacks == {
        "pending": 0,
        "expired": 1,
        "overdue": 0,
    }


async def test_a_merchant_below_its_threshold_counts_until_back_above(own_db: Database) -> None:
    merchant_id = await merchant(own_db)
    await alerts.set_threshold(own_db, merchant_id, "test", 200_000_00, operator="test")
    await alerts.check_once(own_db)
    assert (await health.read(own_db, now_ms())).balances_low == {"test": 1, "live": 0}

    await alerts.set_threshold(own_db, merchant_id, "test", 1_00, operator="test")
    await alerts.check_once(own_db)
    assert (await health.read(own_db, now_ms())).balances_low == {"test": 0, "live": 0}


async def test_the_watch_shows_the_queues_and_this_process_on_metrics(own_db: Database) -> None:
    merchant_id = await merchant(own_db)
    await flagged(own_db, merchant_id)

    class Breakers:
        def degraded(self) -> dict[str, tuple[bool, int]]:
            return {"worldlink": (True, 3)}

    class Gateway:
        db = own_db
        breakers = Breakers()

        def isp_waiting(self) -> dict[str, int]:
            return {"arrownet": 7}

    stop = asyncio.Event()
    watching = asyncio.create_task(health.watch(Gateway(), stop, own_every_s=0.01))
    try:
        for _ in range(500):
            if REGISTRY.get_sample_value("bhuktani_payments_flagged", {"env": "test"}) == 1:
                break
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await watching

    assert REGISTRY.get_sample_value("bhuktani_payments_flagged", {"env": "test"}) == 1
    assert REGISTRY.get_sample_value("bhuktani_isp_degraded", {"isp": "worldlink"}) == 1
    assert REGISTRY.get_sample_value("bhuktani_isp_breaker_trips", {"isp": "worldlink"}) == 3
    assert REGISTRY.get_sample_value("bhuktani_isp_calls_waiting", {"group": "arrownet"}) == 7
    metrics.ISP_DEGRADED.remove("worldlink")
    metrics.ISP_TRIPS.remove("worldlink")
    metrics.ISP_WAITING.remove("arrownet")


async def test_a_watch_told_0_s_asks_the_database_nothing(
    own_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Database] = []

    async def counted(db: Database) -> None:
        reads.append(db)

    monkeypatch.setattr(health, "publish", counted)

    class Breakers:
        def degraded(self) -> dict[str, tuple[bool, int]]:
            return {}

    class Gateway:
        db = own_db
        breakers = Breakers()

        def isp_waiting(self) -> dict[str, int]:
            return {}

    for every_s, read in ((0.0, False), (60.0, True)):
        stop = asyncio.Event()
        watching = asyncio.create_task(
            health.watch(Gateway(), stop, every_s=every_s, own_every_s=0.01)
        )
        await asyncio.sleep(0.1)
        stop.set()
        await watching
        # With an interval the watch reads at once; with 0, never.
        assert bool(reads) is read, every_s


async def test_a_failed_read_shows_the_database_down_and_keeps_the_last_counts(
    own_db: Database,
) -> None:
    await health.publish(own_db)
    assert REGISTRY.get_sample_value("bhuktani_database_up") == 1
    flagged_before = REGISTRY.get_sample_value("bhuktani_payments_flagged", {"env": "test"})

    class Down:
        async def read(self, body: object) -> object:
            raise ConnectionError("the database is down")

    await health.publish(Down())  # type: ignore[arg-type]
    assert REGISTRY.get_sample_value("bhuktani_database_up") == 0
    assert REGISTRY.get_sample_value("bhuktani_payments_flagged", {"env": "test"}) == flagged_before
    await health.publish(own_db)
    assert REGISTRY.get_sample_value("bhuktani_database_up") == 1
