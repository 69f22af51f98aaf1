"""A merchant's dispute of a final payment, from raised to resolved: an operator refunds it
(the existing refund transfer) or rejects it, once, in one transaction with its audit
entry and the merchant's `dispute.resolved` event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bhuktani import audit, logs, money
from bhuktani.callbacks import outbox
from bhuktani.clock import now_ms
from bhuktani.domain import FINAL_STATES, State
from bhuktani.errors import CannotFulfil, ReferenceMissing, UnknownReference, field_error
from bhuktani.payments import operator, policy
from bhuktani.runtime import Gateway
from bhuktani.services import registry
from bhuktani.services.fields import loose_int
from bhuktani.store import Database, Row, Tx, keyset

OPEN = "open"
REFUNDED = "refunded"
REJECTED = "rejected"
STATUSES = (OPEN, REFUNDED, REJECTED)
MAX_REASON_CHARS = 500
MAX_NOTE_CHARS = 500
MAX_REFERENCE_CHARS = 50
# The merchant's listing: its default and largest page.
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
# The operator's listing reads at most this many, newest first.
OPERATOR_LIMIT = 1000
COLUMNS = (
    "d.id, d.merchant_id, d.env, d.payment_id, d.reference, d.reason, d.status, d.created_ms,"
    " d.resolved_ms, d.resolved_by, d.note, d.refund_paisa, d.refund_transfer_id,"
    " p.amount_paisa"
)
FROM = "FROM disputes d JOIN payments p ON p.id = d.payment_id"


class DisputeError(Exception):
    """An operator's action was refused and nothing changed; the message says why."""


@dataclass(frozen=True)
class Resolution:
    dispute: dict[str, Any]
    audit_id: int
    # The webhook-id of the dispute.resolved event; None when the merchant has no URL.
    event_id: str | None
    refund_transfer_id: int | None


def _rupees(paisa: object) -> float | None:
    return None if paisa is None else money.to_rupees(int(str(paisa)))


def _time(ms: object) -> str | None:
    return None if ms is None else outbox.event_time(int(str(ms)))


def view(row: Row) -> dict[str, Any]:
    """A dispute as the merchant reads it: in the API's answers and in its event."""
    return {
        "id": int(row["id"]),
        "reference": str(row["reference"]),
        "response_id": int(row["payment_id"]),
        "amount": money.to_rupees(int(row["amount_paisa"])),
        "reason": str(row["reason"]),
        "status": str(row["status"]),
        "created_at": _time(row["created_ms"]),
        "resolved_at": _time(row["resolved_ms"]),
        "note": row["note"],
        "refund_amount": _rupees(row["refund_paisa"]),
    }


def operator_view(row: Row) -> dict[str, Any]:
    return {
        **view(row),
        "merchant_id": int(row["merchant_id"]),
        "env": str(row["env"]),
        "resolved_by": row["resolved_by"],
        "refund_transfer_id": row["refund_transfer_id"],
    }


def _reason(data: dict[str, Any]) -> str:
    reason = data.get("reason")
    if reason is None:
        raise field_error("reason", "Send the 'reason' of the dispute")
    if not isinstance(reason, str):
        raise field_error("reason", "reason must be a string")
    text = reason.strip()
    if not text:
        raise field_error("reason", "reason cannot be blank")
    if len(text) > MAX_REASON_CHARS:
        raise field_error("reason", f"reason is {len(text)} characters; at most {MAX_REASON_CHARS}")
    return text


def _reference(data: dict[str, Any]) -> str:
    reference = data.get("reference")
    if reference in (None, ""):
        raise ReferenceMissing("Send the 'reference' of the payment disputed")
    if not isinstance(reference, str) or len(reference) > MAX_REFERENCE_CHARS:
        raise UnknownReference("No payment with this reference for this token")
    return reference


async def _one(tx: Tx, dispute_id: int) -> Row | None:
    return await tx.fetchrow(f"SELECT {COLUMNS} {FROM} WHERE d.id = $1", dispute_id)


async def raise_dispute(
    gateway: Gateway, data: dict[str, Any], token: str | None, client: str
) -> dict[str, Any]:
    """POST /api/disputes/: a dispute of one of the caller's final payments."""
    principal = await policy.caller(gateway, token, client)
    logs.bind(merchant_id=principal.merchant_id, env=principal.env)
    dispute = await raise_for(gateway.db, principal.merchant_id, principal.env, data)
    return {"status": True, "dispute": dispute}


async def raise_for(
    db: Database, merchant_id: int, env: str, data: dict[str, Any]
) -> dict[str, Any]:
    """A dispute of one of the merchant's final payments in `env`, at most one open at a
    time for a payment: the dispute as the merchant reads it (view). `data` holds the
    fields as the API takes them, `reference` and `reason`; what is wrong with them is
    refused in the API's words."""
    reference = _reference(data)
    logs.bind(reference=reference)
    reason = _reason(data)

    async def body(tx: Tx) -> dict[str, Any]:
        # Locked: two disputes of one payment at once see each other.
        payment = await tx.fetchrow(
            "SELECT id, service, state FROM payments"
            " WHERE merchant_id = $1 AND env = $2 AND reference = $3 FOR UPDATE",
            merchant_id,
            env,
            reference,
        )
        if payment is None:
            raise UnknownReference("No payment with this reference for this token")
        if payment["state"] not in FINAL_STATES:
            shown = registry.state_shown(str(payment["service"]), str(payment["state"]))
            raise CannotFulfil(
                f"The payment is {shown}: it can be disputed once it is final"
                " (Success or Failed); look it up or wait for its callback"
            )
        open_one = await tx.fetchrow(
            "SELECT id FROM disputes WHERE payment_id = $1 AND status = 'open'",
            int(payment["id"]),
        )
        if open_one is not None:
            raise CannotFulfil(
                f"Dispute {open_one['id']} of this payment is open already",
                error_data={"dispute_id": int(open_one["id"])},
            )
        created = await tx.fetchrow(
            "INSERT INTO disputes (merchant_id, env, payment_id, reference, reason, status,"
            " created_ms) VALUES ($1, $2, $3, $4, $5, 'open', $6) RETURNING id",
            merchant_id,
            env,
            int(payment["id"]),
            reference,
            reason,
            now_ms(),
        )
        assert created is not None
        row = await _one(tx, int(created["id"]))
        assert row is not None
        return view(row)

    return await db.run(body)


def _cursor(value: object) -> tuple[int, int] | None:
    """The keyset (created_ms, id) of the last dispute of a page, opaque to clients."""
    if value in (None, ""):
        return None
    after = keyset.decode(value) if isinstance(value, str) else None
    if after is None:
        raise field_error("cursor", "cursor must be a next_cursor given by this listing")
    return after


def _limit(value: object) -> int:
    if value in (None, ""):
        return DEFAULT_LIMIT
    limit = loose_int(value)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise field_error("limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return limit


def _status(value: object) -> str | None:
    if value in (None, ""):
        return None
    if value not in STATUSES:
        raise field_error("status", "status must be open, refunded or rejected")
    return str(value)


async def merchant_listing(
    gateway: Gateway, data: dict[str, Any], token: str | None, client: str
) -> dict[str, Any]:
    """GET /api/disputes/: the caller's disputes in its environment, newest first, a page
    at a time (keyset, never OFFSET)."""
    principal = await policy.caller(gateway, token, client)
    logs.bind(merchant_id=principal.merchant_id, env=principal.env)
    status = _status(data.get("status"))
    limit = _limit(data.get("limit"))
    after = _cursor(data.get("cursor"))
    args: list[object] = [principal.merchant_id, principal.env]
    sql = f"SELECT {COLUMNS} {FROM} WHERE d.merchant_id = $1 AND d.env = $2"
    if status is not None:
        args.append(status)
        sql += f" AND d.status = ${len(args)}"
    if after is not None:
        args += [after[0], after[1]]
        n = len(args)
        sql += f" AND (d.created_ms < ${n - 1} OR (d.created_ms = ${n - 1} AND d.id < ${n}))"
    args.append(limit + 1)
    sql += f" ORDER BY d.created_ms DESC, d.id DESC LIMIT ${len(args)}"
    rows = await gateway.db.read(lambda tx: tx.fetch(sql, *args))
    return {
        "status": True,
        "results": [view(row) for row in rows[:limit]],
        "next_cursor": keyset.next_cursor(rows, limit, "created_ms"),
    }


async def listing(
    db: Database, *, open_only: bool = False, merchant_id: int | None = None
) -> list[dict[str, Any]]:
    """The operator's first OPERATOR_LIMIT disputes (operator_page's first page)."""
    rows, _ = await operator_page(db, open_only=open_only, merchant_id=merchant_id)
    return rows


async def operator_page(
    db: Database,
    *,
    open_only: bool = False,
    merchant_id: int | None = None,
    limit: int = OPERATOR_LIMIT,
    after: tuple[int, int] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the operator's listing, newest first, every merchant and environment
    unless told, and the cursor of the next page (None: the last). `after` is a decoded
    cursor (store.keyset.decode): the (created_ms, id) the previous page ended on."""
    assert 0 < limit <= OPERATOR_LIMIT, limit
    where: list[str] = []
    args: list[object] = []
    if open_only:
        where.append("d.status = 'open'")
    if merchant_id is not None:
        args.append(merchant_id)
        where.append(f"d.merchant_id = ${len(args)}")
    if after is not None:
        args.extend(after)
        at, row_id = len(args) - 1, len(args)
        where.append(f"(d.created_ms < ${at} OR (d.created_ms = ${at} AND d.id < ${row_id}))")
    args.append(limit + 1)
    sql = (
        f"SELECT {COLUMNS} {FROM}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY d.created_ms DESC, d.id DESC LIMIT ${len(args)}"
    )
    rows = await db.read(lambda tx: tx.fetch(sql, *args))
    return [operator_view(row) for row in rows[:limit]], keyset.next_cursor(
        rows, limit, "created_ms"
    )


def _text(value: str, name: str, limit: int) -> str:
    text = value.strip()
    if not text:
        raise DisputeError(f"the {name} is required and cannot be blank")
    if len(text) > limit:
        raise DisputeError(f"the {name} is {len(text)} characters; at most {limit}")
    return text


async def _refund(
    tx: Tx, row: Row, *, amount_paisa: int | None, note: str, who: str
) -> operator.Refunded:
    payment = await tx.fetchrow("SELECT state FROM payments WHERE id = $1", row["payment_id"])
    assert payment is not None, row["payment_id"]
    if payment["state"] != State.SUCCESS:
        raise DisputeError(
            f"dispute {row['id']}: payment {row['payment_id']} is {payment['state']}: its"
            " credits were never taken, there is nothing to refund; resolve it with --reject"
        )
    target = operator.Target(str(row["reference"]), int(row["merchant_id"]), str(row["env"]))
    try:
        return await operator.refund_in(
            tx, target, amount_paisa=amount_paisa, note=note, operator=who
        )
    except operator.OperatorError as exc:
        raise DisputeError(f"dispute {row['id']}: {exc}") from None


async def resolve(
    db: Database,
    dispute_id: int,
    *,
    refund: bool,
    amount_paisa: int | None = None,
    note: str,
    operator_name: str,
) -> Resolution:
    """Refund (by default all that is left unrefunded) or reject an open dispute, in one
    transaction: the refund transfer, the dispute's new status, the audit entry
    "disputes.resolve" and the merchant's dispute.resolved event. A dispute resolved
    already, or resolved by another operator meanwhile, is refused and nothing changes."""
    note = _text(note, "note", MAX_NOTE_CHARS)
    who = _text(operator_name, "operator", audit.MAX_OPERATOR_CHARS)
    if amount_paisa is not None and not refund:
        raise DisputeError("an amount is for a refund; a rejection moves no money")
    if amount_paisa is not None and amount_paisa <= 0:
        raise DisputeError("a refund amount must be positive")

    async def body(tx: Tx) -> Resolution:
        locked = await tx.fetchrow(
            "SELECT id, status FROM disputes WHERE id = $1 FOR UPDATE", dispute_id
        )
        if locked is None:
            raise DisputeError(f"no dispute {dispute_id}")
        row = await _one(tx, dispute_id)
        assert row is not None
        if row["status"] != OPEN:
            raise DisputeError(
                f"dispute {dispute_id} is {row['status']} already"
                f" (by {row['resolved_by']}); a dispute is resolved once"
            )
        refunded = None
        if refund:
            refunded = await _refund(tx, row, amount_paisa=amount_paisa, note=note, who=who)
        status = REFUNDED if refund else REJECTED
        changed = await tx.execute(
            "UPDATE disputes SET status = $2, resolved_ms = $3, resolved_by = $4, note = $5,"
            " refund_paisa = $6, refund_transfer_id = $7 WHERE id = $1 AND status = 'open'",
            dispute_id,
            status,
            now_ms(),
            who,
            note,
            None if refunded is None else refunded.amount_paisa,
            None if refunded is None else refunded.transfer_id,
        )
        if changed != 1:
            raise DisputeError(f"dispute {dispute_id} changed meanwhile; nothing was done")
        after = await _one(tx, dispute_id)
        assert after is not None and after["status"] == status
        dispute = view(after)
        audit_id = await audit.record(
            tx,
            operator=who,
            action="disputes.resolve",
            merchant_id=int(after["merchant_id"]),
            env=str(after["env"]),
            subject=f"dispute {dispute_id}",
            details={
                "dispute_id": dispute_id,
                "reference": str(after["reference"]),
                "payment_id": int(after["payment_id"]),
                "status": status,
                "refund_amount": dispute["refund_amount"],
                "refund_transfer_id": None if refunded is None else refunded.transfer_id,
                "note": note,
            },
        )
        event_id = await outbox.enqueue_event(
            tx,
            int(after["merchant_id"]),
            str(after["env"]),
            "dispute.resolved",
            {"env": str(after["env"]), "dispute": dispute},
            payment_id=int(after["payment_id"]),
        )
        return Resolution(
            dispute=operator_view(after),
            audit_id=audit_id,
            event_id=event_id,
            refund_transfer_id=None if refunded is None else refunded.transfer_id,
        )

    return await db.run(body)
