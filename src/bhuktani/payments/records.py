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

from bhuktani import ledger
from bhuktani.callbacks import outbox
from bhuktani.clock import now_ms
from bhuktani.errors import ApiError, client_error
from bhuktani.merchants.service import Principal
from bhuktani.payments import one_statement, sessions
from bhuktani.providers import untrusted
from bhuktani.providers.base import NotFound, Order, Paid, Refused, StatusResult
from bhuktani.store import CheckViolation, Database, Row, Tx, UniqueViolation

FINAL_STATES = ("Success", "Failed", "Error", "Expired")


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
        "SELECT id, state FROM payments WHERE merchant_id = $1 AND env = $2 AND reference = $3",
        principal.merchant_id,
        principal.env,
        reference,
    )


def _duplicate(row: Row) -> ApiError:
    return ApiError(
        "1013",
        "A payment with this reference exists; its outcome is in error_data",
        error_data={"id": int(row["id"]), "state": str(row["state"])},
    )


async def refuse_duplicate(db: Database, principal: Principal, reference: str) -> None:
    """1013 with the first payment's outcome if this reference was used already."""
    existing = await db.read(lambda tx: _by_reference(tx, principal, reference))
    if existing is not None:
        raise _duplicate(existing)


async def open_payment(
    db: Database,
    principal: Principal,
    service: str,
    order: Order,
    reference: str,
    session_id: int | None,
    *,
    first_check_ms: int,
) -> None:
    """Step 1. The reconciler looks at the payment from first_check_ms on, in case this
    process dies before step 3. Raises 1013 (reference used), 1016 (credits), 4000 (session taken)."""
    values = _payment_values(principal, service, order, reference, session_id)
    try:
        if db.dialect == "postgresql":
            await _open_in_one_statement(db, principal, order, reference, values, first_check_ms)
            return

        async def _tx(tx: Tx) -> None:
            # A used reference fails the payment's insert (UniqueViolation, below): no
            # look-up first, in this transaction or before it.
            merchant_id, isp_id = await _accounts(tx, principal, order)
            hold_id = await ledger.open_pending(
                tx, merchant_id, isp_id, order.amount_paisa, order.payment_id
            )
            now = now_ms()
            await tx.execute(
                f"INSERT INTO payments ({one_statement.NEW_PAYMENT_COLUMNS}) VALUES ($1, $2,"
                " $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'Processing', $15, $16,"
                " $16)",
                *values,
                hold_id,
                first_check_ms,
                now,
            )
            if session_id is not None and not await sessions.claim(
                tx, session_id, order.payment_id
            ):
                raise client_error("Session already used for a payment")
            # The hot balance row is locked last, for the shortest time.
            try:
                await ledger.reserve(tx, merchant_id, order.amount_paisa)
            except ledger.InsufficientCredits:
                raise await _short_of_credits(tx, merchant_id) from None

        await db.run(_tx)
    except UniqueViolation:
        # The reference is taken, by an earlier payment or by one an instant ago.
        existing = await db.read(lambda tx: _by_reference(tx, principal, reference))
        if existing is None:
            raise
        raise _duplicate(existing) from None


def _payment_values(
    principal: Principal, service: str, order: Order, reference: str, session_id: int | None
) -> tuple[object, ...]:
    """A new payment's columns from id to session_id (one_statement.NEW_PAYMENT_COLUMNS)."""
    return (
        order.payment_id,
        principal.merchant_id,
        principal.env,
        reference,
        service,
        order.isp,
        order.username,
        None if order.package_code is None else str(order.package_code),
        order.package_title,
        order.duration_code,
        order.days,
        order.amount_paisa,
        session_id,
    )


async def _accounts(tx: Tx, principal: Principal, order: Order) -> tuple[int, int]:
    """The merchant's account and the ISP's, created on first use."""
    merchant_id = await ledger.merchant_account(tx, principal.merchant_id, principal.env)
    isp_id = await ledger.ensure_account(
        tx, "isp", principal.env, ledger.isp_code(order.isp, order.payment_id)
    )
    return merchant_id, isp_id


def _remembered_accounts(
    db: Database, principal: Principal, order: Order
) -> tuple[int, int] | None:
    """_accounts without a query, once both are known to this process."""
    merchant_id = ledger.remembered_account(
        db.memo, "merchant", principal.env, ledger.merchant_code(principal.merchant_id)
    )
    isp_id = ledger.remembered_account(
        db.memo, "isp", principal.env, ledger.isp_code(order.isp, order.payment_id)
    )
    if merchant_id is None or isp_id is None:
        return None
    return merchant_id, isp_id


async def _short_of_credits(tx: Tx, merchant_account_id: int) -> ApiError:
    available = (await ledger.balance(tx, merchant_account_id)).available_paisa
    return ApiError("1016", f"Available credits {available / 100:.2f} do not cover the amount")


async def _open_in_one_statement(
    db: Database,
    principal: Principal,
    order: Order,
    reference: str,
    values: tuple[object, ...],
    first_check_ms: int,
) -> None:
    """open_payment on PostgreSQL, the payment's `values` from _payment_values: one round
    trip (see one_statement)."""
    accounts = _remembered_accounts(db, principal, order)
    if accounts is None:
        accounts = await db.run(lambda tx: _accounts(tx, principal, order))
    merchant_id, isp_id = accounts
    try:
        row = await db.once(
            one_statement.HOLD,
            *values,
            merchant_id,
            isp_id,
            first_check_ms,
            now_ms(),
        )
    except CheckViolation as exc:
        # The balance row comes last: the payment's insert had passed, so the reference
        # was free and 1016 is the answer, as in the statement by statement transaction.
        if ledger.CREDITS_CHECK not in str(exc):
            raise
        raise await db.read(lambda tx: _short_of_credits(tx, merchant_id)) from None
    if row is None:
        # The session was taken, and nothing was written. A retry whose first payment
        # spent the session learns that payment's outcome (1013) first.
        await refuse_duplicate(db, principal, reference)
        raise client_error("Session already used for a payment")


async def _available(tx: Tx, merchant_id: int, env: str) -> int:
    account = await ledger.merchant_account(tx, merchant_id, env)
    return (await ledger.balance(tx, account)).available_paisa


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


PAYMENT_COLUMNS = one_statement.PAYMENT_COLUMNS


def describe(row: Row) -> str:
    """A payment's outcome in words, as look-ups and callbacks tell it."""
    state = row["state"]
    if state == "Success":
        return f"Transaction successful; ISP receipt {row['detail']}"
    if state == "Processing":
        return "Awaiting confirmation from the ISP"
    return str(row["detail"])


# The longest ISP receipt or refusal reason a payment keeps.
DETAIL_CHARS = 500


def _final(result: StatusResult) -> tuple[str, str, str]:
    """A final answer's state, ISP status and detail, as the payment stores them."""
    if isinstance(result, Paid):
        return "Success", "Paid", result.receipt[:DETAIL_CHARS]
    if isinstance(result, Refused):
        return "Failed", "Refused", result.reason[:DETAIL_CHARS]
    return "Failed", "NotFound", "The ISP never received the payment"


async def settle(
    db: Database,
    payment_id: int,
    result: StatusResult,
    *,
    next_check_ms: int,
    not_found_is_final: bool = False,
    notify: bool = False,
) -> Settled:
    """Step 3: move a Processing payment by the ISP's answer. Unknown keeps the hold.
    With notify (the merchant was told Processing), a final state queues a callback in
    the same transaction."""
    final_answer = isinstance(result, (Paid, Refused)) or (
        isinstance(result, NotFound) and not_found_is_final
    )

    async def with_balance(tx: Tx, row: Row) -> Settled:
        return _settled(row, await _available(tx, int(row["merchant_id"]), str(row["env"])))

    async def as_it_is(tx: Tx) -> Settled:
        row = await tx.fetchrow(f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1", payment_id)
        assert row is not None, payment_id
        return await with_balance(tx, row)

    async def _tx(tx: Tx) -> Settled:
        # Each branch changes the payment only while it is Processing, in one statement
        # that also locks the row and returns it; a payment settled meanwhile (by the
        # reconciler, say) is returned as it is.
        now = now_ms()
        if not final_answer:
            row = await tx.fetchrow(
                "UPDATE payments SET isp_status = $2, next_check_ms = $3, updated_ms = $4,"
                " lease_until_ms = 0, failed_rounds = 0"
                f" WHERE {one_statement.BY_ID_STILL_PROCESSING}"
                f" RETURNING {PAYMENT_COLUMNS}",
                payment_id,
                "NotFound" if isinstance(result, NotFound) else "Unknown",
                next_check_ms,
                now,
            )
            if row is None:
                return await as_it_is(tx)
            return await with_balance(tx, row)
        state, isp_status, detail = _final(result)
        row = await tx.fetchrow(
            "UPDATE payments SET state = $2, isp_status = $3, detail = $4, updated_ms = $5,"
            f" next_check_ms = NULL WHERE {one_statement.BY_ID_STILL_PROCESSING}"
            f" RETURNING {PAYMENT_COLUMNS}",
            payment_id,
            state,
            isp_status,
            detail,
            now,
        )
        if row is None:
            return await as_it_is(tx)
        hold_id = row["hold_transfer_id"]
        assert hold_id is not None, "every Processing payment has a hold"
        final = dict(row)
        if state == "Failed" and row["session_id"] is not None:
            await sessions.release(tx, int(row["session_id"]), payment_id)
        if notify:
            await outbox.enqueue(tx, final, state=state, detail=describe(final))
        # The balance rows last: they are the hot ones.
        if state == "Success":
            closed = await ledger.post(tx, int(hold_id))
        else:
            closed = await ledger.void(tx, int(hold_id))
        return _settled(final, closed.available_paisa, result)

    if final_answer and not notify and db.dialect == "postgresql":
        # The commit's own settle, one round trip (see one_statement).
        state, isp_status, detail = _final(result)
        row = await db.once(
            one_statement.SETTLE_POST if state == "Success" else one_statement.SETTLE_VOID,
            payment_id,
            state,
            isp_status,
            detail,
            now_ms(),
        )
        if row is None:
            return await db.run(as_it_is)
        return _settled(row, int(row["available"]), result)
    return await db.run(_tx)


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
