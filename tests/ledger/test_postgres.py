"""PostgreSQL runs a commit's hold and settle each as one statement (ledger/postgres.py).

Row locks: the hold and the settle take them in one order, the payment, then the
merchant's balance row. A retried reference whose first payment is being settled waits on
that payment; it must not hold the balance row while it waits, or the settle, which wants
the balance row next, waits on it in turn (a deadlock: one of them fails).

A statement commits whatever its steps did: a settle must not move a payment to a final
state unless it also closes the payment's hold."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import pytest

from bhuktani.api.errors import code_of
from bhuktani.errors import Refusal
from bhuktani.isps.base import Paid
from bhuktani.ledger.accounts import merchant_code
from bhuktani.ledger.book import book_for
from bhuktani.merchants.service import Principal
from bhuktani.payments import records
from bhuktani.store import Database, connect, query_row
from tests.conftest import only_postgresql
from tests.support import arrownet_order, new_merchant

SERVICE = "arrownet"


async def waiting_on_a_lock(conn: asyncpg.Connection, other_than: int) -> bool:
    row = await conn.fetchrow(
        "SELECT count(*) AS n FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> $1 AND wait_event_type = 'Lock'",
        other_than,
    )
    assert row is not None
    return int(row["n"]) > 0


@only_postgresql  # SQLite has one writer at a time: no row locks to order.
async def test_a_retry_waiting_on_a_settle_does_not_hold_the_balance_row(
    empty_pg_url: str,
) -> None:
    db = await connect(empty_pg_url)
    try:
        await retry_while_settling(db, empty_pg_url)
    finally:
        await db.close()


async def retry_while_settling(db: Database, db_url: str) -> None:
    merchant = await new_merchant(db)
    principal = Principal(merchant.merchant_id, "test", "all")
    reference = f"lock-order-{secrets.token_hex(4)}"
    first = arrownet_order(merchant.merchant_id)
    await records.open_payment(
        book_for(db), principal, SERVICE, first, reference, None, first_check_ms=2**62
    )
    account = await query_row(
        db,
        "SELECT id FROM accounts WHERE kind = 'merchant' AND env = 'test' AND code = $1",
        merchant_code(merchant.merchant_id),
    )
    assert account is not None

    settling = await asyncpg.connect(db_url)
    try:
        # A settle of the first payment, half done: it holds the payment's row.
        tx = settling.transaction()
        await tx.start()
        await settling.execute(
            "UPDATE payments SET updated_ms = updated_ms + 1 WHERE id = $1", first.payment_id
        )
        retry = asyncio.create_task(
            records.open_payment(
                book_for(db),
                principal,
                SERVICE,
                arrownet_order(merchant.merchant_id),
                reference,
                None,
                first_check_ms=2**62,
            )
        )
        for _ in range(200):
            if retry.done() or await waiting_on_a_lock(settling, settling.get_server_pid()):
                break
            await asyncio.sleep(0.01)
        assert not retry.done(), "the retry should wait for the settle of its reference"
        # The settle goes on to the balance row: free, since the retry waits without it.
        await settling.execute("SET LOCAL lock_timeout = '3s'")
        await settling.execute(
            "UPDATE accounts SET held_paisa = held_paisa WHERE id = $1", account["id"]
        )
        await tx.commit()
    finally:
        await settling.close()

    with pytest.raises(Refusal) as refused:
        await retry
    assert code_of(refused.value) == "1013", refused.value
    assert refused.value.error_data == {"id": first.payment_id, "state": "Processing"}


@only_postgresql
async def test_a_settle_without_a_hold_to_close_moves_nothing(empty_pg_url: str) -> None:
    db = await connect(empty_pg_url)
    try:
        merchant = await new_merchant(db)
        principal = Principal(merchant.merchant_id, "test", "all")
        made = arrownet_order(merchant.merchant_id)
        await records.open_payment(
            book_for(db), principal, SERVICE, made, "no-hold", None, first_check_ms=2**62
        )
        # A state the ledger's invariants forbid, made by hand: the hold is gone.
        await db.once(
            "UPDATE payments SET hold_transfer_id = -1 WHERE id = $1 RETURNING id",
            made.payment_id,
        )
        before = await db.read(lambda tx: records._available(tx, merchant.merchant_id, "test"))

        settled = await records.settle(book_for(db), made.payment_id, Paid("r-1"), next_check_ms=0)

        assert settled.state == "Processing"
        row = await query_row(db, "SELECT state FROM payments WHERE id = $1", made.payment_id)
        assert row is not None and row["state"] == "Processing"
        after = await db.read(lambda tx: records._available(tx, merchant.merchant_id, "test"))
        assert after == before
    finally:
        await db.close()
