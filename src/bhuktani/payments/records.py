"""The payment's two short transactions around the ISP call (DESIGN.md):

1. `open_payment`: claim the reference, claim the session, hold the credits, Processing;
2. (the ISP call, with no transaction open);
3. `settle`: post the hold (Success) or void it (Failed), or keep it for the reconciler.

`settle` only moves a payment that is still Processing, so the commit and the reconciler
may race to settle one payment and exactly one of them moves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bhuktani.callbacks import outbox
from bhuktani.clock import now_ms
from bhuktani.domain import State
from bhuktani.errors import CannotFulfil, DuplicateReference, InsufficientCredits, Refusal
from bhuktani.isps import untrusted
from bhuktani.isps.base import NotFound, Order, Paid, Refused, StatusResult
from bhuktani.ledger import accounts as ledger
from bhuktani.ledger.book import (
    BY_ID_STILL_PROCESSING,
    PAYMENT_COLUMNS,
    CreditsShort,
    Final,
    NewPayment,
    PaymentBook,
    SessionTaken,
)
from bhuktani.merchants.service import Principal
from bhuktani.services import registry
from bhuktani.store import Database, Row, Tx, UniqueViolation


@dataclass(frozen=True)
class Settled:
    state: str
    payment_id: int
    detail: str
    amount_paisa: int
    available_paisa: int
    # Set when the ISP refused the payment: the reason and the field it named.
    refusal: Refused | None = None


async def _by_reference(tx: Tx, principal: Principal, reference: str) -> Row | None:
    return await tx.fetchrow(
        "SELECT id, state, service FROM payments"
        " WHERE merchant_id = $1 AND env = $2 AND reference = $3",
        principal.merchant_id,
        principal.env,
        reference,
    )


def _duplicate(row: Row) -> Refusal:
    return DuplicateReference(
        "A payment with this reference exists; its outcome is in error_data",
        error_data={
            "id": int(row["id"]),
            "state": registry.state_shown(str(row["service"]), str(row["state"])),
        },
    )


async def refuse_duplicate(db: Database, principal: Principal, reference: str) -> None:
    """1013 with the first payment's outcome if this reference was used already."""
    existing = await db.read(lambda tx: _by_reference(tx, principal, reference))
    if existing is not None:
        raise _duplicate(existing)


async def open_payment(
    book: PaymentBook,
    principal: Principal,
    service: str,
    order: Order,
    reference: str,
    session_id: int | None,
    *,
    first_check_ms: int,
    charge_paisa: int = 0,
) -> None:
    """Step 1. The reconciler looks at the payment from first_check_ms on, in case this
    process dies before step 3. The hold takes the order's amount and the merchant's
    service charge on it. Raises 1013 (reference used), 1016 (credits short of amount
    and charge), 4000 (session taken)."""
    payment = NewPayment(
        id=order.payment_id,
        merchant_id=principal.merchant_id,
        env=principal.env,
        reference=reference,
        service=service,
        isp=order.isp,
        username=order.username,
        package_code=None if order.package_code is None else str(order.package_code),
        package_title=order.package_title,
        duration_code=order.duration_code,
        days=order.days,
        amount_paisa=order.amount_paisa,
        session_id=session_id,
        first_check_ms=first_check_ms,
        charge_paisa=charge_paisa,
    )
    try:
        await book.open_hold(payment)
    except UniqueViolation:
        # The reference is taken, by an earlier payment or by one an instant ago.
        existing = await book.db.read(lambda tx: _by_reference(tx, principal, reference))
        if existing is None:
            raise
        raise _duplicate(existing) from None
    except CreditsShort as short:
        raise InsufficientCredits(
            f"Available credits {short.available_paisa / 100:.2f} do not cover the amount"
            + (f" and its service charge {charge_paisa / 100:.2f}" if charge_paisa else "")
        ) from None
    except SessionTaken:
        # A retry whose first payment spent the session learns that payment's outcome
        # (1013) first.
        await refuse_duplicate(book.db, principal, reference)
        raise CannotFulfil("Session already used for a payment") from None


async def _available(tx: Tx, merchant_id: int, env: str) -> int:
    account = await ledger.merchant_account(tx, merchant_id, env)
    return (await ledger.balance(tx, account)).available_paisa


async def available(db: Database, principal: Principal) -> int:
    """The merchant's available credits now."""
    return await db.read(lambda tx: _available(tx, principal.merchant_id, principal.env))


def _settled(row: Row, available_paisa: int, result: StatusResult | None = None) -> Settled:
    """What settle answers; `result` is the ISP answer that moved the payment, if one did."""
    return Settled(
        state=str(row["state"]),
        payment_id=int(row["id"]),
        detail=str(row["detail"]),
        amount_paisa=int(row["amount_paisa"]),
        available_paisa=available_paisa,
        refusal=result if isinstance(result, Refused) else None,
    )


def describe(row: Row) -> str:
    """A payment's outcome in words, as look-ups and callbacks tell it."""
    state = row["state"]
    if state == State.SUCCESS:
        return f"Transaction successful; ISP receipt {row['detail']}"
    if state == State.PROCESSING:
        return "Awaiting confirmation from the ISP"
    return str(row["detail"])


# The longest ISP receipt or refusal reason a payment keeps.
DETAIL_CHARS = 500


def final_of(result: StatusResult) -> Final:
    """A final answer as the payment keeps it: its state, the ISP's word, the detail."""
    if isinstance(result, Paid):
        return Final(State.SUCCESS, "Paid", result.receipt[:DETAIL_CHARS])
    if isinstance(result, Refused):
        return Final(State.FAILED, "Refused", result.reason[:DETAIL_CHARS])
    return Final(State.FAILED, "NotFound", "The ISP never received the payment")


async def queue_callback(tx: Tx, row: Row) -> None:
    """The merchant's callback of a payment made final, in the same transaction."""
    await outbox.enqueue(tx, row, state=str(row["state"]), detail=describe(row))


async def settle(
    book: PaymentBook,
    payment_id: int,
    result: StatusResult,
    *,
    next_check_ms: int,
    not_found_is_final: bool = False,
    notify: bool = False,
    charged: bool = False,
) -> Settled:
    """Step 3: move a Processing payment by the ISP's answer. Unknown keeps the hold.
    With notify (the merchant was told Processing), a final state queues a callback in
    the same transaction. `charged`: the payment holds a service charge (the commit that
    held it knows; PaymentBook.finalize)."""
    final_answer = isinstance(result, (Paid, Refused)) or (
        isinstance(result, NotFound) and not_found_is_final
    )

    async def with_balance(tx: Tx, row: Row) -> Settled:
        return _settled(row, await _available(tx, int(row["merchant_id"]), str(row["env"])))

    async def as_it_is(tx: Tx) -> Settled:
        row = await tx.fetchrow(f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1", payment_id)
        assert row is not None, payment_id
        return await with_balance(tx, row)

    async def still_unknown(tx: Tx) -> Settled:
        # Changed only while Processing, in one statement that also locks the row and
        # returns it; a payment settled meanwhile (by the reconciler, say) is returned as
        # it is.
        row = await tx.fetchrow(
            "UPDATE payments SET isp_status = $2, next_check_ms = $3, updated_ms = $4,"
            " lease_until_ms = 0, failed_rounds = 0"
            f" WHERE {BY_ID_STILL_PROCESSING} RETURNING {PAYMENT_COLUMNS}",
            payment_id,
            "NotFound" if isinstance(result, NotFound) else "Unknown",
            next_check_ms,
            now_ms(),
        )
        if row is None:
            return await as_it_is(tx)
        return await with_balance(tx, row)

    if not final_answer:
        return await book.db.run(still_unknown)
    moved = await book.finalize(
        payment_id,
        final_of(result),
        on_final=queue_callback if notify else None,
        charged=charged,
    )
    if moved is None:
        return await book.db.run(as_it_is)
    return _settled(moved.row, moved.available_paisa, result)


@dataclass(frozen=True)
class Due:
    payment_id: int
    env: str
    service: str
    order: Order
    created_ms: int
    checks: int


async def claim_due(db: Database, *, limit: int, lease_ms: int) -> Sequence[Due]:
    """Lease Processing payments whose next check is due. On PostgreSQL, SKIP LOCKED lets
    several workers claim at once without ever claiming the same payment."""
    now = now_ms()

    async def _tx(tx: Tx) -> Sequence[Row]:
        rows = await tx.fetch(
            "UPDATE payments SET lease_until_ms = $2, checks = checks + 1 WHERE id IN ("
            " SELECT id FROM payments WHERE state = 'Processing' AND next_check_ms <= $1"
            " AND lease_until_ms <= $1 ORDER BY next_check_ms LIMIT $3 FOR UPDATE SKIP LOCKED)"
            " RETURNING id, merchant_id, env, service, isp, username, package_code, package_title,"
            " duration_code, days, amount_paisa, created_ms, checks",
            now,
            now + lease_ms,
            limit,
        )
        return rows

    rows = await db.run(_tx)
    return [
        Due(
            payment_id=int(row["id"]),
            env=str(row["env"]),
            service=str(row["service"]),
            created_ms=int(row["created_ms"]),
            checks=int(row["checks"]),
            order=Order(
                payment_id=int(row["id"]),
                merchant_id=int(row["merchant_id"]),
                isp=str(row["isp"]),
                username=str(row["username"]),
                package_code=None if row["package_code"] is None else int(row["package_code"]),
                package_title=str(row["package_title"]),
                duration_code=str(row["duration_code"]),
                days=int(row["days"]),
                amount_paisa=int(row["amount_paisa"]),
            ),
        )
        for row in rows
    ]


# payments.flag_reason's size.
FLAG_REASON_CHARS = 200


async def flag(db: Database, payment_id: int, reason: str) -> None:
    """An operator decides, the hold stays: past the reconciliation window, or after
    rounds that could not finish the payment. `reason` is what the operator reads."""

    async def _tx(tx: Tx) -> None:
        await tx.execute(
            "UPDATE payments SET flagged = $2, flag_reason = $3, next_check_ms = NULL,"
            " lease_until_ms = 0, updated_ms = $4 WHERE id = $1 AND state = 'Processing'",
            payment_id,
            True,
            untrusted.shown(reason, FLAG_REASON_CHARS),
            now_ms(),
        )

    await db.run(_tx)


async def failed_round(db: Database, payment_id: int, *, next_check_ms: int) -> int | None:
    """After a round that could not finish the payment: one more failed round counted, and
    the payment asked again at next_check_ms, not when the round's lease runs out. Returns
    the rounds failed in a row, or None when the payment is no longer the reconciler's
    (final, or flagged, meanwhile)."""

    async def _tx(tx: Tx) -> int | None:
        row = await tx.fetchrow(
            "UPDATE payments SET failed_rounds = failed_rounds + 1, next_check_ms = $2,"
            " lease_until_ms = 0, updated_ms = $3"
            " WHERE id = $1 AND state = 'Processing' AND flagged = $4 RETURNING failed_rounds",
            payment_id,
            next_check_ms,
            now_ms(),
            False,
        )
        return None if row is None else int(row["failed_rounds"])

    return await db.run(_tx)
