"""An operator's tools on one payment: show everything about it, resolve a flagged one,
refund one the ISP reversed. Each change is a ledger move, an `operator_actions` row
(who, why, how much) and an audit log entry in one transaction: money moves by new
entries, never by an edit.

A payment is named by its reference, which is unique only per merchant and environment,
so a change refuses to guess when several payments share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bhuktani import audit, money
from bhuktani.clock import nepal_time, now_ms
from bhuktani.domain import Env, State
from bhuktani.ledger import accounts as ledger
from bhuktani.ledger.book import Final, PaymentBook
from bhuktani.payments import listing, records
from bhuktani.store import Database, Row, Tx

MAX_NOTE_CHARS = 500
MAX_OPERATOR_CHARS = 100
ENVS = tuple(Env)
OPERATOR_STATUS = "Operator"
# What the merchant reads (status look-up, callback) once an operator decided.
CONFIRMED_DETAIL = "confirmed by an operator"
RELEASED_DETAIL = "The ISP never confirmed the payment; an operator released the credits"
COLUMNS = (
    "id, merchant_id, env, reference, service, isp, username, package_title, duration_code,"
    " days, amount_paisa, charge_paisa, state, isp_status, detail, hold_transfer_id, session_id,"
    " checks, flagged, flag_reason, created_ms, updated_ms"
)


class OperatorError(Exception):
    """The action was refused and nothing changed; the message says why."""


@dataclass(frozen=True)
class Target:
    """Which payment: a reference, narrowed by merchant and environment when given."""

    reference: str
    merchant_id: int | None = None
    env: str | None = None


@dataclass(frozen=True)
class Resolved:
    payment_id: int
    state: str
    transfer_id: int
    action_id: int


@dataclass(frozen=True)
class Refunded:
    payment_id: int
    amount_paisa: int
    refunded_paisa: int
    left_paisa: int
    transfer_id: int
    action_id: int
    # The service charge given back with this refund, the one that completed the
    # payment's (0 otherwise, and for a payment without a charge).
    charge_refunded_paisa: int = 0


def _iso(ms: int | None) -> str | None:
    """A time as every list shows it: Nepal time to the millisecond, with its offset."""
    return None if ms is None else nepal_time(int(ms))


def _text(value: str, name: str, limit: int) -> str:
    text = value.strip()
    if not text:
        raise OperatorError(f"the {name} is required and cannot be blank")
    if len(text) > limit:
        raise OperatorError(f"the {name} is {len(text)} characters; at most {limit}")
    return text


def _describe_target(target: Target) -> str:
    where = f"reference {target.reference!r}"
    if target.merchant_id is not None:
        where += f" of merchant {target.merchant_id}"
    if target.env is not None:
        where += f" in {target.env}"
    return where


async def _matching(tx: Tx, target: Target, *, lock: bool) -> Sequence[Row]:
    if target.env is not None and target.env not in ENVS:
        raise OperatorError("env must be test or live")
    sql = f"SELECT {COLUMNS} FROM payments WHERE reference = $1"
    args: list[object] = [target.reference]
    if target.merchant_id is not None:
        args.append(target.merchant_id)
        sql += f" AND merchant_id = ${len(args)}"
    if target.env is not None:
        args.append(target.env)
        sql += f" AND env = ${len(args)}"
    sql += " ORDER BY created_ms, id"
    if lock:
        sql += " FOR UPDATE"
    return await tx.fetch(sql, *args)


async def _one(tx: Tx, target: Target) -> Row:
    """The one payment named, locked until the transaction ends."""
    rows = await _matching(tx, target, lock=True)
    if not rows:
        raise OperatorError(f"no payment with {_describe_target(target)}")
    if len(rows) > 1:
        which = ", ".join(f"merchant {r['merchant_id']} {r['env']}" for r in rows)
        raise OperatorError(
            f"{len(rows)} payments have {_describe_target(target)} ({which});"
            " name one with --merchant and --env"
        )
    return rows[0]


async def _record(
    tx: Tx,
    payment_id: int,
    action: str,
    *,
    amount_paisa: int,
    transfer_id: int,
    operator: str,
    note: str,
) -> int:
    row = await tx.fetchrow(
        "INSERT INTO operator_actions (payment_id, action, amount_paisa, transfer_id, operator,"
        " note, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        payment_id,
        action,
        amount_paisa,
        transfer_id,
        operator,
        note,
        now_ms(),
    )
    assert row is not None
    return int(row["id"])


def _refuse_unresolvable(row: Row) -> None:
    payment = (
        f"payment {row['id']} ({row['reference']}, merchant {row['merchant_id']} {row['env']})"
    )
    if row["state"] != State.PROCESSING:
        raise OperatorError(f"{payment} is {row['state']}: a final state never changes")
    if not bool(row["flagged"]):
        raise OperatorError(
            f"{payment} is Processing but not flagged: the reconciler is still asking the ISP"
        )


async def resolve(
    book: PaymentBook, target: Target, *, success: bool, note: str, operator: str
) -> Resolved:
    """Decide a flagged Processing payment: capture its hold (success) or release it.
    The merchant's callback is queued in the same transaction."""
    note = _text(note, "note", MAX_NOTE_CHARS)
    operator = _text(operator, "operator", MAX_OPERATOR_CHARS)
    final = (
        Final(State.SUCCESS, OPERATOR_STATUS, CONFIRMED_DETAIL)
        if success
        else Final(State.FAILED, OPERATOR_STATUS, RELEASED_DETAIL)
    )

    async def body(tx: Tx) -> Resolved:
        row = await _one(tx, target)
        _refuse_unresolvable(row)
        payment_id = int(row["id"])
        # Guarded against a reconciler or a second operator settling it meanwhile.
        moved = await book.finalize_in(
            tx, payment_id, final, on_final=records.queue_callback, flagged_only=True
        )
        if moved is None:
            raise OperatorError(f"payment {payment_id} changed meanwhile; nothing was done")
        assert moved.transfer_id is not None
        action_id = await _record(
            tx,
            payment_id,
            "resolve_success" if success else "resolve_failed",
            amount_paisa=int(row["amount_paisa"]),
            transfer_id=moved.transfer_id,
            operator=operator,
            note=note,
        )
        await audit.record(
            tx,
            operator=operator,
            action="payment.resolve",
            merchant_id=int(row["merchant_id"]),
            env=str(row["env"]),
            subject=str(row["reference"]),
            details={
                "payment_id": payment_id,
                "amount": money.format_rupees(int(row["amount_paisa"])),
                "state": final.state.value,
                "note": note,
            },
        )
        return Resolved(payment_id, final.state, moved.transfer_id, action_id)

    return await book.db.run(body)


async def _refunded_paisa(tx: Tx, payment_id: int) -> int:
    row = await tx.fetchrow(
        f"SELECT COALESCE(SUM(t.amount_paisa), 0) AS s {ledger.REFUNDS_OF_PAYMENT}", payment_id
    )
    assert row is not None
    return int(row["s"])


def _check_refund(amount_paisa: int | None, note: str, operator: str) -> tuple[str, str]:
    """The refund's note and operator as recorded; refused before anything is read."""
    note = _text(note, "note", MAX_NOTE_CHARS)
    operator = _text(operator, "operator", MAX_OPERATOR_CHARS)
    if amount_paisa is not None and amount_paisa <= 0:
        raise OperatorError("a refund amount must be positive")
    return note, operator


async def refund(
    db: Database,
    target: Target,
    *,
    amount_paisa: int | None,
    note: str,
    operator: str,
) -> Refunded:
    """Give back (part of) a Success payment the ISP reversed, in a transaction of its
    own: refund_in's rules."""
    note, operator = _check_refund(amount_paisa, note, operator)
    return await db.run(
        lambda tx: refund_in(tx, target, amount_paisa=amount_paisa, note=note, operator=operator)
    )


async def refund_in(
    tx: Tx,
    target: Target,
    *,
    amount_paisa: int | None,
    note: str,
    operator: str,
) -> Refunded:
    """Give back (part of) a Success payment the ISP reversed, in the caller's
    transaction; by default all that is left. The payment stays Success; the refund is a
    transfer from the ISP's account back to the merchant's, and the note is the remark the
    merchant sees in its status look-up. The refund that completes the payment's amount
    also gives back its service charge, from the fees account. Raises OperatorError, and
    then has written nothing."""
    note, operator = _check_refund(amount_paisa, note, operator)
    # Locked: two refunds at once see each other's and never exceed the payment.
    row = await _one(tx, target)
    payment_id = int(row["id"])
    if row["state"] != State.SUCCESS:
        raise OperatorError(
            f"payment {payment_id} is {row['state']}: only a Success payment can be refunded"
        )
    paid_paisa = int(row["amount_paisa"])
    before_paisa = await _refunded_paisa(tx, payment_id)
    left_paisa = paid_paisa - before_paisa
    assert left_paisa >= 0, payment_id
    if left_paisa == 0:
        raise OperatorError(f"payment {payment_id} is already refunded in full")
    amount = left_paisa if amount_paisa is None else amount_paisa
    if amount > left_paisa:
        raise OperatorError(
            f"refund {money.format_rupees(amount)} exceeds the"
            f" {money.format_rupees(left_paisa)} left unrefunded of payment {payment_id}"
        )
    hold = await tx.fetchrow(
        "SELECT debit_account_id, credit_account_id FROM transfers WHERE id = $1",
        row["hold_transfer_id"],
    )
    assert hold is not None, payment_id
    charge_paisa = int(row["charge_paisa"])
    fee = None
    if amount == left_paisa and charge_paisa:
        fees_id = await ledger.fees_account(tx, str(row["env"]), payment_id)
        fee = ledger.Fee(fees_id, charge_paisa)
    # The accounts the payment moved money between, in the other direction.
    transfer_id = await ledger.refund(
        tx,
        int(hold["credit_account_id"]),
        int(hold["debit_account_id"]),
        amount,
        payment_id,
        note,
        fee=fee,
    )
    action_id = await _record(
        tx,
        payment_id,
        "refund",
        amount_paisa=amount,
        transfer_id=transfer_id,
        operator=operator,
        note=note,
    )
    refunded = before_paisa + amount
    charge_back_paisa = 0 if fee is None else fee.charge_paisa
    await audit.record(
        tx,
        operator=operator,
        action="payment.refund",
        merchant_id=int(row["merchant_id"]),
        env=str(row["env"]),
        subject=str(row["reference"]),
        details={
            "payment_id": payment_id,
            "amount": money.format_rupees(amount),
            "charge_refunded": money.format_rupees(charge_back_paisa),
            "refunded": money.format_rupees(refunded),
            "left": money.format_rupees(paid_paisa - refunded),
            "state": str(row["state"]),
            "note": note,
        },
    )
    return Refunded(
        payment_id,
        amount,
        refunded,
        paid_paisa - refunded,
        transfer_id,
        action_id,
        charge_back_paisa,
    )


async def _transfers(tx: Tx, payment_id: int) -> list[dict[str, Any]]:
    rows = await tx.fetch(
        "SELECT t.id, t.kind, t.amount_paisa, t.note, t.created_ms, d.code AS debit,"
        " c.code AS credit FROM transfers t JOIN accounts d ON d.id = t.debit_account_id"
        " JOIN accounts c ON c.id = t.credit_account_id WHERE t.payment_id = $1 ORDER BY t.id",
        payment_id,
    )
    return [
        {
            "id": int(r["id"]),
            "kind": str(r["kind"]),
            "amount": money.format_rupees(int(r["amount_paisa"])),
            "debit": str(r["debit"]),
            "credit": str(r["credit"]),
            "note": r["note"],
            "created_at": _iso(r["created_ms"]),
        }
        for r in rows
    ]


async def _callbacks(tx: Tx, payment_id: int) -> list[dict[str, Any]]:
    rows = await tx.fetch(
        "SELECT id, event_id, url, status, attempts, next_attempt_ms, created_ms, delivered_ms"
        " FROM callbacks WHERE payment_id = $1 ORDER BY id",
        payment_id,
    )
    result = []
    for r in rows:
        attempts = await tx.fetch(
            "SELECT attempted_ms, http_status, latency_ms, error FROM callback_attempts"
            " WHERE callback_id = $1 ORDER BY id",
            int(r["id"]),
        )
        result.append(
            {
                "id": int(r["id"]),
                "event_id": str(r["event_id"]),
                "url": str(r["url"]),
                "status": str(r["status"]),
                "attempts": int(r["attempts"]),
                "next_attempt_at": _iso(r["next_attempt_ms"]),
                "created_at": _iso(r["created_ms"]),
                "delivered_at": _iso(r["delivered_ms"]),
                "attempt_log": [
                    {
                        "attempted_at": _iso(a["attempted_ms"]),
                        "http_status": a["http_status"],
                        "latency_ms": int(a["latency_ms"]),
                        "error": a["error"],
                    }
                    for a in attempts
                ],
            }
        )
    return result


async def _actions(tx: Tx, payment_id: int) -> list[dict[str, Any]]:
    rows = await tx.fetch(
        "SELECT id, action, amount_paisa, transfer_id, operator, note, created_ms"
        " FROM operator_actions WHERE payment_id = $1 ORDER BY id",
        payment_id,
    )
    return [
        {
            "id": int(r["id"]),
            "action": str(r["action"]),
            "amount": None
            if r["amount_paisa"] is None
            else money.format_rupees(int(r["amount_paisa"])),
            "transfer_id": None if r["transfer_id"] is None else int(r["transfer_id"]),
            "operator": str(r["operator"]),
            "note": str(r["note"]),
            "created_at": _iso(r["created_ms"]),
        }
        for r in rows
    ]


async def _refund_ids(tx: Tx, payment_id: int) -> set[int]:
    rows = await tx.fetch(f"SELECT t.id {ledger.REFUNDS_OF_PAYMENT}", payment_id)
    return {int(r["id"]) for r in rows}


async def _view(tx: Tx, row: Row) -> dict[str, Any]:
    payment_id = int(row["id"])
    transfers = await _transfers(tx, payment_id)
    refund_ids = await _refund_ids(tx, payment_id)
    return {
        # What `payment list` shows of it, then what only its own page shows.
        **listing.render(row),
        "plan": f"{row['package_title']} ({row['days']} days)",
        # The merchant's service charge, held and paid with the amount.
        "charge": money.format_rupees(int(row["charge_paisa"])),
        "checks": int(row["checks"]),
        "detail": str(row["detail"]),
        "transfers": transfers,
        "refunded_amount": money.format_rupees(await _refunded_paisa(tx, payment_id)),
        "refunds": [
            {k: t[k] for k in ("id", "amount", "note", "created_at")}
            for t in transfers
            if t["id"] in refund_ids
        ],
        "callbacks": await _callbacks(tx, payment_id),
        "operator_actions": await _actions(tx, payment_id),
    }


async def show(db: Database, target: Target) -> list[dict[str, Any]]:
    """Every payment matching, oldest first, as JSON-ready values (amounts in rupees)."""

    async def body(tx: Tx) -> list[dict[str, Any]]:
        rows = await _matching(tx, target, lock=False)
        return [await _view(tx, row) for row in rows]

    return await db.read(body)
