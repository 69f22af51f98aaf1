"""Double-entry ledger with two-phase transfers (hold, then post or void).

Every function runs inside the caller's transaction, so that a state change and the money
it moves commit together or not at all. Merchant balance rows, the hot ones, are always
updated last (see _move).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from bhuktani.clock import now_ms
from bhuktani.store import Tx


class InsufficientCredits(Exception):
    pass


# The accounts' CHECK that keeps a merchant's available credits from going below zero.
CREDITS_CHECK = "merchant_available_not_negative"


@dataclass(frozen=True)
class Balance:
    available_paisa: int
    held_paisa: int
    consumed_paisa: int


def merchant_code(merchant_id: int) -> str:
    return f"merchant:{merchant_id}"


# Every payment to an ISP credits its account: one row for all merchants would serialise
# them all. The ISP's payable is spread over shards, picked by payment id; the ISP owes
# the sum of its shards.
ISP_SHARDS = 16


def isp_code(isp: str, payment_id: int | None = None) -> str:
    if payment_id is None:
        return f"isp:{isp}"
    return f"isp:{isp}/{payment_id % ISP_SHARDS}"


FUNDING_CODE = "funding"


def _account_key(kind: str, env: str, code: str) -> tuple[str, str, str, str]:
    return ("account", kind, env, code)


def remembered_account(memo: dict[Any, Any], kind: str, env: str, code: str) -> int | None:
    """The id of a committed account seen before (see ensure_account), without a query."""
    known = memo.get(_account_key(kind, env, code))
    return None if known is None else int(known)


async def ensure_account(
    tx: Tx, kind: str, env: str, code: str, merchant_id: int | None = None
) -> int:
    known = remembered_account(tx.memo, kind, env, code)
    if known is not None:
        return known
    key = _account_key(kind, env, code)
    row = await tx.fetchrow(
        "SELECT id FROM accounts WHERE kind = $1 AND env = $2 AND code = $3",
        kind,
        env,
        code,
    )
    if row is not None:
        if key not in tx.created_here:  # committed: its id never changes
            tx.memo[key] = int(row["id"])
        return int(row["id"])
    row = await tx.fetchrow(
        "INSERT INTO accounts (kind, env, code, merchant_id) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (kind, env, code) DO UPDATE SET code = EXCLUDED.code RETURNING id",
        kind,
        env,
        code,
        merchant_id,
    )
    assert row is not None
    tx.created_here.add(key)
    return int(row["id"])


async def merchant_account(tx: Tx, merchant_id: int, env: str) -> int:
    return await ensure_account(tx, "merchant", env, merchant_code(merchant_id), merchant_id)


async def balance(tx: Tx, account_id: int) -> Balance:
    row = await tx.fetchrow(
        "SELECT balance_paisa, held_paisa, consumed_paisa FROM accounts WHERE id = $1",
        account_id,
    )
    assert row is not None, account_id
    return Balance(
        available_paisa=int(row["balance_paisa"]) - int(row["held_paisa"]),
        held_paisa=int(row["held_paisa"]),
        consumed_paisa=int(row["consumed_paisa"]),
    )


async def _insert_transfer(
    tx: Tx,
    kind: str,
    debit_id: int,
    credit_id: int,
    amount_paisa: int,
    *,
    pending_id: int | None = None,
    payment_id: int | None = None,
    note: str | None = None,
) -> int:
    row = await tx.fetchrow(
        "INSERT INTO transfers (kind, debit_account_id, credit_account_id, amount_paisa,"
        " pending_id, payment_id, note, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " RETURNING id",
        kind,
        debit_id,
        credit_id,
        amount_paisa,
        pending_id,
        payment_id,
        note,
        now_ms(),
    )
    assert row is not None
    return int(row["id"])


async def _move(
    tx: Tx,
    debit_id: int,
    credit_id: int,
    amount_paisa: int,
    *,
    release: bool,
    consumed_paisa: int = 0,
    hot: str,
) -> int:
    """Post amount from debit to credit; `release` also drops the debit's hold of it.
    consumed_paisa is what the merchant on either side has spent by it (negative for a
    refund), kept in the same row update so each balance row is written once.

    `hot` ("debit" or "credit") names the merchant's side, updated last: every
    transaction locks merchant rows after any other account row, so two transfers never
    wait on each other in opposite orders, and the hot row stays locked the least.
    Returns the hot row's available balance after the move."""
    assert amount_paisa > 0
    assert debit_id != credit_id
    assert hot in ("debit", "credit")
    available = -1
    for side in ("credit", "debit") if hot == "debit" else ("debit", "credit"):
        if side == "debit":
            row = await tx.fetchrow(
                "UPDATE accounts SET balance_paisa = balance_paisa - $2,"
                " held_paisa = held_paisa - $3,"
                " consumed_paisa = consumed_paisa + CASE WHEN kind = 'merchant' THEN $5 ELSE 0 END"
                " WHERE id = $1 AND (kind <> 'merchant' OR balance_paisa - held_paisa >= $4)"
                " RETURNING balance_paisa - held_paisa AS available",
                debit_id,
                amount_paisa,
                amount_paisa if release else 0,
                0 if release else amount_paisa,
                max(consumed_paisa, 0),
            )
            if row is None:
                raise InsufficientCredits()
        else:
            row = await tx.fetchrow(
                "UPDATE accounts SET balance_paisa = balance_paisa + $2,"
                " consumed_paisa = consumed_paisa + CASE WHEN kind = 'merchant' THEN $3 ELSE 0 END"
                " WHERE id = $1 RETURNING balance_paisa - held_paisa AS available",
                credit_id,
                amount_paisa,
                min(consumed_paisa, 0),
            )
            assert row is not None, credit_id
        if side == hot:
            available = int(row["available"])
    return available


async def transfer(
    tx: Tx,
    debit_id: int,
    credit_id: int,
    amount_paisa: int,
    *,
    payment_id: int | None = None,
    note: str | None = None,
) -> int:
    """A transfer posted at once (credit loads, refunds). Raises InsufficientCredits; then
    nothing is written. Loads credit a merchant, whose row is updated last."""
    await _move(tx, debit_id, credit_id, amount_paisa, release=False, hot="credit")
    return await _insert_transfer(
        tx,
        "single",
        debit_id,
        credit_id,
        amount_paisa,
        payment_id=payment_id,
        note=note,
    )


async def open_pending(
    tx: Tx, debit_id: int, credit_id: int, amount_paisa: int, payment_id: int
) -> int:
    """The pending transfer of a hold, before its balance row is touched (see reserve)."""
    assert amount_paisa > 0
    return await _insert_transfer(
        tx, "pending", debit_id, credit_id, amount_paisa, payment_id=payment_id
    )


async def reserve(tx: Tx, debit_id: int, amount_paisa: int) -> None:
    """Hold credits on the debit account: the last statement of a hold's transaction, so
    the hot balance row stays locked for the shortest time. Raises InsufficientCredits;
    the caller's transaction then rolls back, and nothing is held."""
    changed = await tx.execute(
        "UPDATE accounts SET held_paisa = held_paisa + $2"
        " WHERE id = $1 AND balance_paisa - held_paisa >= $2",
        debit_id,
        amount_paisa,
    )
    if changed != 1:
        raise InsufficientCredits()


class Closed(NamedTuple):
    transfer_id: int
    available_paisa: int  # the debit account's (the merchant's), after the close


async def _close(tx: Tx, kind: str, pending_id: int) -> tuple[int, int, int, int]:
    """Write the post or void of a pending transfer, copying its accounts and amount in
    the same statement. The unique pending_id makes a second close fail."""
    row = await tx.fetchrow(
        "INSERT INTO transfers (kind, debit_account_id, credit_account_id, amount_paisa,"
        " pending_id, payment_id, created_ms)"
        " SELECT CAST($2 AS TEXT), debit_account_id, credit_account_id, amount_paisa, id,"
        " payment_id, CAST($3 AS BIGINT) FROM transfers WHERE id = $1 AND kind = 'pending'"
        " RETURNING id, debit_account_id, credit_account_id, amount_paisa",
        pending_id,
        kind,
        now_ms(),
    )
    assert row is not None, f"no pending transfer {pending_id}"
    return (
        int(row["id"]),
        int(row["debit_account_id"]),
        int(row["credit_account_id"]),
        int(row["amount_paisa"]),
    )


async def post(tx: Tx, pending_id: int) -> Closed:
    """Capture a hold."""
    transfer_id, debit_id, credit_id, amount_paisa = await _close(tx, "post", pending_id)
    available = await _move(
        tx,
        debit_id,
        credit_id,
        amount_paisa,
        release=True,
        consumed_paisa=amount_paisa,
        hot="debit",
    )
    return Closed(transfer_id, available)


async def void(tx: Tx, pending_id: int) -> Closed:
    """Release a hold in full."""
    transfer_id, debit_id, _, amount_paisa = await _close(tx, "void", pending_id)
    row = await tx.fetchrow(
        "UPDATE accounts SET held_paisa = held_paisa - $2 WHERE id = $1 AND held_paisa >= $2"
        " RETURNING balance_paisa - held_paisa AS available",
        debit_id,
        amount_paisa,
    )
    assert row is not None, pending_id
    return Closed(transfer_id, int(row["available"]))


async def refund(
    tx: Tx,
    isp_account_id: int,
    merchant_account_id: int,
    amount_paisa: int,
    payment_id: int,
    note: str,
) -> int:
    """Give a merchant back money an ISP reversed after a Success: a new transfer, no edit."""
    transfer_id = await _insert_transfer(
        tx,
        "single",
        isp_account_id,
        merchant_account_id,
        amount_paisa,
        payment_id=payment_id,
        note=note,
    )
    await _move(
        tx,
        isp_account_id,
        merchant_account_id,
        amount_paisa,
        release=False,
        consumed_paisa=-amount_paisa,
        hot="credit",
    )
    return transfer_id
