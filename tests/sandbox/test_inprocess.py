"""The in-process sandbox ISP behind TEST tokens acts as an idempotent ISP: a payment id is
applied once, whatever is retried or raced, and a subscriber's days add up."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from dataclasses import replace

from bhuktani.isps.base import Lookup, Order, Paid, Refused, Subscriber
from bhuktani.sandbox.inprocess import SandboxProvider
from bhuktani.services import arrownet
from bhuktani.store import Database, Tx, query_row
from tests.support import arrownet_order

_ids = itertools.count(7_000_001)
# A merchant of this module's own: the sandbox keeps its subscribers per merchant.
MERCHANT = 9_000_000 + secrets.randbelow(1_000_000)


def order(payment_id: int, **changes: object) -> Order:
    return replace(arrownet_order(MERCHANT, payment_id), **changes)  # type: ignore[arg-type]


def provider(db: Database) -> SandboxProvider:
    return SandboxProvider(db, slow_delay_s=0.0, settle_window_s=0.0)


async def subscriber(sandbox: SandboxProvider, db: Database) -> Subscriber:
    async def current(tx: Tx) -> Subscriber | None:
        return await sandbox.lookup_in(tx, Lookup(arrownet.SLUG, "Pradhanang", MERCHANT))

    found = await db.read(current)
    assert found is not None
    return found


async def applied(db: Database, payment_id: int) -> int:
    row = await query_row(
        db, "SELECT COUNT(*) AS n FROM sandbox_payments WHERE payment_id = $1", payment_id
    )
    assert row is not None
    return int(row["n"])


async def test_a_payment_paid_again_answers_its_first_receipt_and_adds_no_days(
    db: Database,
) -> None:
    sandbox = provider(db)
    start = (await subscriber(sandbox, db)).days_remaining
    payment_id = next(_ids)

    first = await sandbox.pay(order(payment_id))
    again = await sandbox.pay(order(payment_id))

    assert isinstance(first, Paid)
    assert again == first
    assert (await subscriber(sandbox, db)).days_remaining == start + 30
    assert await applied(db, payment_id) == 1


async def test_a_payment_applied_before_is_not_refused_when_asked_again_otherwise(
    db: Database,
) -> None:
    sandbox = provider(db)
    payment_id = next(_ids)
    first = await sandbox.pay(order(payment_id))

    wrong_amount = await sandbox.pay(order(payment_id, amount_paisa=1))
    never_paid = await sandbox.pay(order(next(_ids), amount_paisa=1))

    assert wrong_amount == first
    assert never_paid == Refused("The amount does not match the plan price", "amount")


async def test_an_unknown_username_is_refused(db: Database) -> None:
    result = await provider(db).pay(order(next(_ids), username="nobody-here"))
    assert result == Refused("Username not found", "username")


async def test_one_payment_raced_is_applied_once(db: Database) -> None:
    sandbox = provider(db)
    start = (await subscriber(sandbox, db)).days_remaining
    payment_id = next(_ids)

    answers = await asyncio.gather(*(sandbox.pay(order(payment_id)) for _ in range(10)))

    assert len(set(answers)) == 1 and isinstance(answers[0], Paid)
    assert (await subscriber(sandbox, db)).days_remaining == start + 30
    assert await applied(db, payment_id) == 1


async def test_payments_for_one_subscriber_at_once_each_add_their_days(db: Database) -> None:
    sandbox = provider(db)
    start = (await subscriber(sandbox, db)).days_remaining

    answers = await asyncio.gather(*(sandbox.pay(order(next(_ids))) for _ in range(10)))

    assert all(isinstance(a, Paid) for a in answers)
    assert (await subscriber(sandbox, db)).days_remaining == start + 10 * 30


async def test_one_bill_paid_by_many_payments_at_once_is_paid_once(db: Database) -> None:
    """A one-time offer (a Vianet bill): of eight different payments for it at once, one
    is applied and the others refused, and the bill is listed paid once."""
    from bhuktani.services import vianet_updated

    sandbox = provider(db)
    merchant = MERCHANT + 1
    bill = vianet_updated.BILLS.durations[0]
    orders = [
        Order(
            payment_id=next(_ids),
            merchant_id=merchant,
            isp=vianet_updated.SLUG,
            username="9099",
            package_code=None,
            package_title=vianet_updated.BILLS.title,
            duration_code=bill.code,
            days=0,
            amount_paisa=bill.amount_paisa,
        )
        for _ in range(8)
    ]
    results = await asyncio.gather(*(sandbox.pay(o) for o in orders))
    assert sum(isinstance(r, Paid) for r in results) == 1, results
    assert all(isinstance(r, Refused) for r in results if not isinstance(r, Paid))
    row = await query_row(
        db,
        "SELECT paid FROM sandbox_subscribers WHERE merchant_id = $1 AND username = '9099'",
        merchant,
    )
    assert row is not None and str(row["paid"]) == bill.code + "\n"
    paid = next(o for o, r in zip(orders, results, strict=True) if isinstance(r, Paid))
    assert await applied(db, paid.payment_id) == 1
    # Each refused payment left nothing behind; the one applied answers as it did.
    for o, r in zip(orders, results, strict=True):
        if not isinstance(r, Paid):
            assert await applied(db, o.payment_id) == 0
    assert await sandbox.pay(paid) == next(r for r in results if isinstance(r, Paid))
