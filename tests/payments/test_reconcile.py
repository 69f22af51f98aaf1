"""The reconciler: it finishes payments that a crash or an unclear ISP answer left
Processing, only on an explicit answer, and several workers never claim one payment."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from bhuktani import runtime
from bhuktani.clock import now_ms
from bhuktani.isps.base import Order, Refused, Unknown
from bhuktani.ledger.book import book_for
from bhuktani.merchants.service import Principal
from bhuktani.payments import operator, records
from bhuktani.payments import reconcile as reconciler
from bhuktani.settings import Settings
from bhuktani.store import Database, connect
from tests.support import (
    arrownet_order,
    assert_books_balance,
    eventually,
    fast_env,
    fast_settings,
    new_merchant,
    running_server,
)


def order_for(merchant_id: int, username: str) -> Order:
    return replace(arrownet_order(merchant_id), username=username)


async def open_held(db: Database, merchant_id: int, username: str) -> Order:
    """Step 1 of a commit and nothing after it: the process died before the ISP call
    answered. The payment is due for a check at once."""
    order = order_for(merchant_id, username)
    principal = Principal(merchant_id, "test", "all")
    await records.open_payment(
        book_for(db),
        principal,
        "arrownet",
        order,
        f"r-{uuid.uuid4().hex[:12]}",
        None,
        first_check_ms=0,
    )
    return order


async def state_of(db: Database, payment_id: int) -> tuple[str, bool]:
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT state, flagged FROM payments WHERE id = $1", payment_id)
    assert row is not None
    return str(row["state"]), bool(row["flagged"])


async def checks_of(db: Database, payment_id: int) -> int:
    """How many times a reconciler has claimed the payment."""
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT checks FROM payments WHERE id = $1", payment_id)
    assert row is not None
    return int(row["checks"])


async def available(db: Database, merchant_id: int) -> int:
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT balance_paisa - held_paisa AS a FROM accounts"
            " WHERE kind = 'merchant' AND env = 'test' AND merchant_id = $1",
            merchant_id,
        )
    assert row is not None
    return int(row["a"])


async def reconcile_until_final(gateway: runtime.Gateway, payment_id: int) -> str:
    for _ in range(100):
        await reconciler.run_once(gateway)
        state, _ = await state_of(gateway.db, payment_id)
        if state != "Processing":
            return state
        await asyncio.sleep(0.05)
    return "Processing"


async def test_crash_before_the_isp_call_ends_failed_and_refunded(db_url: str) -> None:
    db = await connect(db_url)
    gateway = runtime.build(db, fast_settings(db_url))
    merchant = await new_merchant(db)
    before = await available(db, merchant.merchant_id)
    order = await open_held(db, merchant.merchant_id, "Pradhanang")
    assert await available(db, merchant.merchant_id) == before - order.amount_paisa
    assert await reconcile_until_final(gateway, order.payment_id) == "Failed"
    assert await available(db, merchant.merchant_id) == before
    await assert_books_balance(db)
    await gateway.aclose()


async def test_crash_after_the_isp_applied_it_ends_success(db_url: str) -> None:
    db = await connect(db_url)
    gateway = runtime.build(db, fast_settings(db_url))
    merchant = await new_merchant(db)
    before = await available(db, merchant.merchant_id)
    order = await open_held(db, merchant.merchant_id, "Pradhanang")
    # The ISP took the payment; our answer was lost with the process.
    await gateway.sandbox.pay(order)
    assert await reconcile_until_final(gateway, order.payment_id) == "Success"
    assert await available(db, merchant.merchant_id) == before - order.amount_paisa
    await assert_books_balance(db)
    await gateway.aclose()


async def test_not_found_inside_the_settle_window_is_not_final(db_url: str) -> None:
    db = await connect(db_url)
    gateway = runtime.build(db, fast_settings(db_url, sandbox_settle_window_s=3600))
    merchant = await new_merchant(db)
    order = await open_held(db, merchant.merchant_id, "lost-user")
    await reconciler.run_once(gateway)
    assert await state_of(db, order.payment_id) == ("Processing", False)
    await assert_books_balance(db)
    await gateway.aclose()


@pytest.mark.parametrize("notify", [False, True], ids=["commit", "callback"])
async def test_a_long_isp_reason_is_kept_to_its_bound(db_url: str, notify: bool) -> None:
    """Both ways of settling (on PostgreSQL a commit's own settle is one statement, a
    settle that queues a callback is a transaction) keep the same 500 characters."""
    db = await connect(db_url)
    merchant = await new_merchant(db)
    order = await open_held(db, merchant.merchant_id, "Pradhanang")
    reason = "r" * 499 + "!" + "x" * 1_500
    settled = await records.settle(
        book_for(db), order.payment_id, Refused(reason), next_check_ms=0, notify=notify
    )
    assert (settled.state, settled.detail) == ("Failed", reason[:500])
    assert settled.refusal == Refused(reason)
    await assert_books_balance(db)
    await db.close()


async def test_unknown_past_the_window_is_flagged_and_keeps_its_hold(db_url: str) -> None:
    # No lease: only the flag keeps the second round off the payment.
    settings = fast_settings(
        db_url,
        sandbox_slow_delay_s=3600,
        sandbox_settle_window_s=3600,
        reconcile_flag_after_s=0,
        reconcile_lease_s=0,
    )
    db = await connect(db_url)
    gateway = runtime.build(db, settings)
    merchant = await new_merchant(db)
    before = await available(db, merchant.merchant_id)
    order = await open_held(db, merchant.merchant_id, "slow-user")
    await gateway.sandbox.pay(order)  # applied, but the ISP reports it unknown for an hour
    await reconciler.run_once(gateway)
    assert await state_of(db, order.payment_id) == ("Processing", True)
    assert await available(db, merchant.merchant_id) == before - order.amount_paisa
    # Flagged payments wait for an operator: the reconciler no longer picks them up. Other
    # tests' payments share the database and may fall due meanwhile: count this one's checks.
    checks = await checks_of(db, order.payment_id)
    await reconciler.run_once(gateway)
    assert await checks_of(db, order.payment_id) == checks
    await assert_books_balance(db)
    await gateway.aclose()


async def test_concurrent_workers_never_claim_the_same_payment(db_url: str) -> None:
    setup = await connect(db_url)
    merchant = await new_merchant(setup)
    orders = [await open_held(setup, merchant.merchant_id, "lost-user") for _ in range(40)]
    ours = {o.payment_id for o in orders}
    workers = [await connect(db_url) for _ in range(4)]

    async def claim_all(db: Database) -> list[int]:
        claimed: list[int] = []
        for _ in range(20):
            claimed += [d.payment_id for d in await records.claim_due(db, limit=3, lease_ms=60_000)]
        return claimed

    results = await asyncio.gather(*(claim_all(db) for db in workers))
    claimed = [payment_id for result in results for payment_id in result if payment_id in ours]
    assert len(claimed) == len(set(claimed)), "a payment was claimed twice"
    assert set(claimed) == ours, "every due payment was claimed"
    for db in workers:
        await db.close()
    await setup.close()


async def test_lease_expiry_lets_another_worker_take_over(db_url: str) -> None:
    db = await connect(db_url)
    merchant = await new_merchant(db)
    order = await open_held(db, merchant.merchant_id, "lost-user")
    first = await records.claim_due(db, limit=1000, lease_ms=1)
    assert order.payment_id in {d.payment_id for d in first}
    await asyncio.sleep(0.01)
    # The first worker died holding the lease; once it expires the payment is claimable.
    again = await records.claim_due(db, limit=1000, lease_ms=60_000)
    assert order.payment_id in {d.payment_id for d in again}
    assert now_ms() > 0
    await db.close()


async def test_a_separate_worker_process_settles_what_serve_left_processing(
    db_url: str, tmp_path: Path
) -> None:
    """Scaled out: `serve --no-reconciler` answers, `bhuktani worker` reconciles."""
    db = await connect(db_url)
    merchant = await new_merchant(db)
    with running_server(db_url, tmp_path / "serve.log", reconciler=False) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            body = {
                "token": merchant.test_token,
                "username": "flaky-user",
                "amount": "1695.00",
                "duration": 1,
                "reference": "worker-1",
            }
            response = await http.post("/api/servicegroup/commit/arrownet/", json=body)
            assert response.json()["state"] == "Processing"
            payment_id = response.json()["id"]
            await asyncio.sleep(0.5)
            assert await state_of(db, payment_id) == ("Processing", False), "serve left it"
            worker = subprocess.Popen(
                [sys.executable, "-m", "bhuktani", "worker"],
                env=fast_env(db_url),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:

                async def settled() -> bool:
                    return (await state_of(db, payment_id))[0] == "Success"

                await eventually(settled, timeout_s=20)
            finally:
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(timeout=10) == 0, "the worker stops cleanly on SIGTERM"
    await assert_books_balance(db)
    await db.close()


# A payment the reconciler cannot finish is flagged within a minute, never retried forever.


def failing_settle_for(payment_id: int, real: Any) -> Callable[..., Awaitable[records.Settled]]:
    """records.settle, failing as a database error would, for one payment only."""

    async def settle(db: Database, paid_id: int, *args: Any, **kw: Any) -> records.Settled:
        if paid_id == payment_id:
            raise RuntimeError("disk full")
        settled: records.Settled = await real(db, paid_id, *args, **kw)
        return settled

    return settle


async def flag_reason_of(db: Database, payment_id: int) -> str | None:
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT flag_reason FROM payments WHERE id = $1", payment_id)
    assert row is not None
    return None if row["flag_reason"] is None else str(row["flag_reason"])


async def test_a_settle_that_keeps_failing_is_flagged_and_an_operator_resolves_it(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fast_settings(db_url, reconcile_flag_after_failures=3)
    db = await connect(db_url)
    gateway = runtime.build(db, settings)
    merchant = await new_merchant(db)
    before = await available(db, merchant.merchant_id)
    order = await open_held(db, merchant.merchant_id, "Pradhanang")
    await gateway.sandbox.pay(order)  # the ISP applied it; our write of that fails
    monkeypatch.setattr(records, "settle", failing_settle_for(order.payment_id, records.settle))
    started = asyncio.get_running_loop().time()
    rounds = 0
    while (await state_of(db, order.payment_id))[1] is False:
        assert rounds < 50, "flagged after a bounded number of rounds"
        await reconciler.run_once(gateway)  # never raises for the failing payment
        rounds += 1
        await asyncio.sleep(0.02)
    assert asyncio.get_running_loop().time() - started < 5
    assert await checks_of(db, order.payment_id) == 3, "three failed rounds, then flagged"
    reason = await flag_reason_of(db, order.payment_id)
    assert reason is not None and "RuntimeError: disk full" in reason, reason
    assert await state_of(db, order.payment_id) == ("Processing", True)
    assert await available(db, merchant.merchant_id) == before - order.amount_paisa
    # Flagged: asked no more, and the operator's resolve works on it.
    checks = await checks_of(db, order.payment_id)
    await reconciler.run_once(gateway)
    assert await checks_of(db, order.payment_id) == checks
    monkeypatch.undo()
    target = operator.Target(await order_reference(db, order), merchant.merchant_id, "test")
    done = await operator.resolve(
        book_for(db), target, success=True, note="ISP receipt checked", operator="ops"
    )
    assert done.state == "Success"
    assert await available(db, merchant.merchant_id) == before - order.amount_paisa
    await assert_books_balance(db)
    await gateway.aclose()


async def order_reference(db: Database, order: Order) -> str:
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT reference FROM payments WHERE id = $1", order.payment_id)
    assert row is not None
    return str(row["reference"])


async def test_one_payment_that_fails_does_not_fail_the_round_of_the_others(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fast_settings(db_url)
    db = await connect(db_url)
    gateway = runtime.build(db, settings)
    merchant = await new_merchant(db)
    stuck = await open_held(db, merchant.merchant_id, "Pradhanang")
    fine = await open_held(db, merchant.merchant_id, "Pradhanang")
    for order in (stuck, fine):
        await gateway.sandbox.pay(order)
    monkeypatch.setattr(records, "settle", failing_settle_for(stuck.payment_id, records.settle))
    assert await reconcile_until_final(gateway, fine.payment_id) == "Success"
    state, _ = await state_of(db, stuck.payment_id)
    assert state == "Processing"
    # The failed round released its lease: the payment is asked again at once, not in 60 s.
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT lease_until_ms, next_check_ms FROM payments WHERE id = $1", stuck.payment_id
        )
    assert row is not None and int(row["lease_until_ms"]) == 0
    assert int(row["next_check_ms"]) <= now_ms() + 1_000
    monkeypatch.undo()
    assert await reconcile_until_final(gateway, stuck.payment_id) == "Success"
    await assert_books_balance(db)
    await gateway.aclose()


def test_the_default_settings_flag_an_unfinishable_payment_within_a_minute() -> None:
    settings = Settings()
    rounds_after_the_first = settings.reconcile_flag_after_failures - 1
    assert rounds_after_the_first * settings.reconcile_retry_failed_s < 60


async def test_an_adapter_that_crashes_on_every_status_question_gets_the_payment_flagged(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = await connect(db_url)
    gateway = runtime.build(db, fast_settings(db_url, reconcile_flag_after_failures=2))
    merchant = await new_merchant(db)
    order = await open_held(db, merchant.merchant_id, "Pradhanang")

    async def crash(order: Order) -> Any:
        raise KeyError("receipt")

    monkeypatch.setattr(gateway.sandbox, "status", crash)
    for _ in range(50):
        await reconciler.run_once(gateway)
        if (await state_of(db, order.payment_id))[1]:
            break
        await asyncio.sleep(0.02)
    assert await state_of(db, order.payment_id) == ("Processing", True)
    assert await checks_of(db, order.payment_id) == 2
    reason = await flag_reason_of(db, order.payment_id)
    assert reason is not None and "(error)" in reason and "KeyError" in reason, reason
    await assert_books_balance(db)
    await gateway.aclose()


async def one_round(gateway: runtime.Gateway, payment_id: int) -> None:
    """One reconciler round that claims this payment (a failed round makes it due again
    after reconcile_retry_failed_s)."""
    checks = await checks_of(gateway.db, payment_id)
    for _ in range(100):
        await reconciler.run_once(gateway)
        if await checks_of(gateway.db, payment_id) > checks:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the payment was never claimed")


async def test_failed_rounds_are_counted_by_the_payment_across_workers_and_restarts(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fast_settings(db_url, reconcile_flag_after_failures=3)
    db = await connect(db_url)
    first = runtime.build(db, settings)
    merchant = await new_merchant(db)
    order = await open_held(db, merchant.merchant_id, "Pradhanang")
    await first.sandbox.pay(order)
    monkeypatch.setattr(records, "settle", failing_settle_for(order.payment_id, records.settle))
    for _ in range(2):
        await one_round(first, order.payment_id)
    assert await state_of(db, order.payment_id) == ("Processing", False)
    await first.aclose()
    # Another worker, or the same one restarted, counts on from the payment's own count.
    db = await connect(db_url)
    second = runtime.build(db, settings)
    await one_round(second, order.payment_id)
    assert await state_of(db, order.payment_id) == ("Processing", True)
    await second.aclose()


async def test_a_round_that_reads_the_isp_sets_the_failed_count_back(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fast_settings(db_url, reconcile_flag_after_failures=2)
    db = await connect(db_url)
    gateway = runtime.build(db, settings)
    merchant = await new_merchant(db)
    order = await open_held(db, merchant.merchant_id, "Pradhanang")
    monkeypatch.setattr(records, "settle", failing_settle_for(order.payment_id, records.settle))
    await one_round(gateway, order.payment_id)
    monkeypatch.undo()

    async def still_processing(order: Order) -> Unknown:
        return Unknown("the ISP is still processing the payment")

    # A readable answer that keeps the payment Processing sets the count back to 0.
    monkeypatch.setattr(gateway.sandbox, "status", still_processing)
    await one_round(gateway, order.payment_id)
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT failed_rounds FROM payments WHERE id = $1", order.payment_id
        )
    assert row is not None and int(row["failed_rounds"]) == 0
    await gateway.aclose()
