"""Credits asked for and credits given: a merchant's credit request
(`POST /api/public/creditrequest/`), the operator's approval (a ledger load) or rejection
of it, and the operator's own load. Each decision is one transaction: the request's new
status, the transfer and the audit entry commit together or not at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bhuktani import audit, logs, money
from bhuktani.clock import nepal_time, now_ms
from bhuktani.domain import Env
from bhuktani.errors import BareRefusal
from bhuktani.ledger import accounts as ledger
from bhuktani.payments import policy
from bhuktani.runtime import Gateway
from bhuktani.store import Database, Row, Tx, keyset

ENVS = tuple(env.value for env in Env)
STATUSES = ("pending", "approved", "rejected")
# Requests waiting for an operator, per merchant and environment: a merchant cannot bury
# the operator's queue, and 20 is more than any wallet has needed at once.
MAX_PENDING = 20
MAX_NOTE_CHARS = 500
# The operator's listing: its default and largest page.
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
# The answers of balance_check.md's "Credit Request API".
REQUESTED = "Credit Requested"
INVALID_CREDIT = "Invalid Credit"
TOO_MANY_PENDING = (
    f"Too many pending credit requests: at most {MAX_PENDING} wait for an operator at once"
)
COLUMNS = (
    "id, merchant_id, env, amount_paisa, status, created_ms, decided_ms, decided_by, note,"
    " transfer_id"
)


class CreditRequestError(Exception):
    """The operator's action was refused and nothing changed; the message says why."""


@dataclass(frozen=True)
class Decided:
    request_id: int
    merchant_id: int
    env: str
    amount_paisa: int
    status: str
    # The load's transfer; None for a rejection.
    transfer_id: int | None
    audit_id: int


@dataclass(frozen=True)
class Loaded:
    merchant_id: int
    env: str
    amount_paisa: int
    transfer_id: int
    available_paisa: int
    audit_id: int


def credit_of(value: object) -> int:
    """The `credit` field in paisa: rupees as a JSON number or a numeric string, at most 2
    decimals, above zero and at most an operator's largest load. Anything else is the
    document's one refusal."""
    try:
        return money.to_paisa(value, max_paisa=money.MAX_LOAD_PAISA)
    except money.AmountError:
        raise BareRefusal(INVALID_CREDIT) from None


async def _lock_merchant(tx: Tx, merchant_id: int) -> None:
    # Requests of one merchant are counted and added one transaction at a time (SQLite
    # writes one at a time anyway): two at once cannot both be the 20th.
    row = await tx.fetchrow("SELECT id FROM merchants WHERE id = $1 FOR UPDATE", merchant_id)
    assert row is not None, merchant_id


async def ask(
    gateway: Gateway, data: dict[str, Any], token: str | None, client: str
) -> dict[str, Any]:
    """A merchant's request for credits in its token's environment."""
    principal = await policy.caller(gateway, token, client)
    logs.bind(merchant_id=principal.merchant_id, env=principal.env)
    request_id = await ask_for(gateway.db, principal.merchant_id, principal.env, data)
    return {"status": True, "detail": REQUESTED, "request_id": request_id}


async def ask_for(db: Database, merchant_id: int, env: str, data: dict[str, Any]) -> int:
    """A merchant's request for credits in `env`, pending until an operator decides it:
    its id. `data` holds the fields as the API takes them (`credit`, in rupees); a bad
    amount, or too many requests pending, is refused in the API's words."""
    amount_paisa = credit_of(data.get("credit"))

    async def body(tx: Tx) -> int:
        await _lock_merchant(tx, merchant_id)
        pending = await tx.fetchrow(
            "SELECT COUNT(*) AS n FROM credit_requests"
            " WHERE merchant_id = $1 AND env = $2 AND status = 'pending'",
            merchant_id,
            env,
        )
        assert pending is not None
        if int(pending["n"]) >= MAX_PENDING:
            raise BareRefusal(TOO_MANY_PENDING)
        row = await tx.fetchrow(
            "INSERT INTO credit_requests (merchant_id, env, amount_paisa, status, created_ms)"
            " VALUES ($1, $2, $3, 'pending', $4) RETURNING id",
            merchant_id,
            env,
            amount_paisa,
            now_ms(),
        )
        assert row is not None
        return int(row["id"])

    request_id = await db.run(body)
    logs.bind(credit_request_id=request_id)
    return request_id


def _note(note: str | None, *, required: bool) -> str | None:
    text = (note or "").strip()
    if not text:
        if required:
            raise CreditRequestError("a note is required and cannot be blank")
        return None
    if len(text) > MAX_NOTE_CHARS:
        raise CreditRequestError(f"the note is {len(text)} characters; at most {MAX_NOTE_CHARS}")
    return text


async def _not_pending(tx: Tx, request_id: int) -> CreditRequestError:
    """Why a request could not be decided: it does not exist, or it was decided before."""
    row = await tx.fetchrow(
        "SELECT status, decided_by, decided_ms FROM credit_requests WHERE id = $1", request_id
    )
    if row is None:
        return CreditRequestError(f"no credit request {request_id}")
    return CreditRequestError(
        f"credit request {request_id} is already {row['status']}"
        f" (by {row['decided_by']} at {moment(row['decided_ms'])}); nothing changed"
    )


async def _decide(tx: Tx, request_id: int, status: str, operator: str, note: str | None) -> Row:
    """Move a pending request to `status`; only one decision ever wins, since a second
    finds it no longer pending (on PostgreSQL it waits for the first to commit, then
    sees that)."""
    row = await tx.fetchrow(
        "UPDATE credit_requests SET status = $2, decided_ms = $3, decided_by = $4, note = $5"
        " WHERE id = $1 AND status = 'pending' RETURNING merchant_id, env, amount_paisa",
        request_id,
        status,
        now_ms(),
        operator,
        note,
    )
    if row is None:
        raise await _not_pending(tx, request_id)
    return row


async def _loadable(tx: Tx, merchant_id: int) -> None:
    """Credits go only to a merchant that exists and is not deleted (a disabled one may be
    loaded before it is enabled again)."""
    row = await tx.fetchrow("SELECT status FROM merchants WHERE id = $1", merchant_id)
    if row is None:
        raise CreditRequestError(f"no merchant {merchant_id}")
    if row["status"] == "deleted":
        raise CreditRequestError(f"merchant {merchant_id} is deleted; no credits go to it")


async def _transfer_in(
    tx: Tx, merchant_id: int, env: str, amount_paisa: int, note: str
) -> tuple[int, int]:
    """A load from the funding account: (its transfer id, the merchant's available after)."""
    funding = await ledger.ensure_account(tx, "funding", env, ledger.FUNDING_CODE)
    account = await ledger.merchant_account(tx, merchant_id, env)
    transfer_id = await ledger.transfer(tx, funding, account, amount_paisa, note=note)
    return transfer_id, (await ledger.balance(tx, account)).available_paisa


def _check_env(env: str) -> None:
    if env not in ENVS:
        raise CreditRequestError("env must be test or live")


async def approve(
    db: Database, request_id: int, *, operator: str, note: str | None = None
) -> Decided:
    """Approve a pending request: load its merchant's account with the amount asked."""
    remark = _note(note, required=False)

    async def body(tx: Tx) -> Decided:
        row = await _decide(tx, request_id, "approved", operator, remark)
        merchant_id, env, amount_paisa = (
            int(row["merchant_id"]),
            str(row["env"]),
            int(row["amount_paisa"]),
        )
        # Refused here, the decision above rolls back: the request stays pending, to reject.
        await _loadable(tx, merchant_id)
        transfer_id, _ = await _transfer_in(
            tx, merchant_id, env, amount_paisa, f"credit request {request_id}"
        )
        await tx.execute(
            "UPDATE credit_requests SET transfer_id = $2 WHERE id = $1", request_id, transfer_id
        )
        audit_id = await audit.record(
            tx,
            operator=operator,
            action="credits.approve",
            merchant_id=merchant_id,
            env=env,
            subject=str(request_id),
            details={
                "amount": money.format_rupees(amount_paisa),
                "request_id": request_id,
                "transfer_id": transfer_id,
                "note": remark,
            },
        )
        return Decided(
            request_id, merchant_id, env, amount_paisa, "approved", transfer_id, audit_id
        )

    return await db.run(body)


async def reject(db: Database, request_id: int, *, operator: str, note: str) -> Decided:
    """Reject a pending request; no money moves. The note says why, for the books."""
    remark = _note(note, required=True)

    async def body(tx: Tx) -> Decided:
        row = await _decide(tx, request_id, "rejected", operator, remark)
        merchant_id, env, amount_paisa = (
            int(row["merchant_id"]),
            str(row["env"]),
            int(row["amount_paisa"]),
        )
        audit_id = await audit.record(
            tx,
            operator=operator,
            action="credits.reject",
            merchant_id=merchant_id,
            env=env,
            subject=str(request_id),
            details={
                "amount": money.format_rupees(amount_paisa),
                "request_id": request_id,
                "note": remark,
            },
        )
        return Decided(request_id, merchant_id, env, amount_paisa, "rejected", None, audit_id)

    return await db.run(body)


async def load(
    db: Database, merchant_id: int, env: str, amount_paisa: int, note: str, operator: str
) -> Loaded:
    """The operator's load without a request: the same transfer, audited "credits.load"."""
    _check_env(env)
    assert 0 < amount_paisa <= money.MAX_LOAD_PAISA, amount_paisa
    remark = _note(note, required=True)
    assert remark is not None

    async def body(tx: Tx) -> Loaded:
        await _loadable(tx, merchant_id)
        transfer_id, available_paisa = await _transfer_in(
            tx, merchant_id, env, amount_paisa, remark
        )
        audit_id = await audit.record(
            tx,
            operator=operator,
            action="credits.load",
            merchant_id=merchant_id,
            env=env,
            subject=str(transfer_id),
            details={
                "amount": money.format_rupees(amount_paisa),
                "transfer_id": transfer_id,
                "note": remark,
            },
        )
        return Loaded(merchant_id, env, amount_paisa, transfer_id, available_paisa, audit_id)

    return await db.run(body)


def moment(ms: int | None) -> str | None:
    """A moment in Nepal, where the books are kept: "2026-12-07T12:45:03+05:45"."""
    return None if ms is None else nepal_time(ms, "seconds")


def _view(row: Row) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "merchant_id": int(row["merchant_id"]),
        "env": str(row["env"]),
        "amount": money.format_rupees(int(row["amount_paisa"])),
        "amount_paisa": int(row["amount_paisa"]),
        "status": str(row["status"]),
        "requested_at": moment(int(row["created_ms"])),
        "decided_at": moment(row["decided_ms"]),
        "decided_by": row["decided_by"],
        "note": row["note"],
        "transfer_id": None if row["transfer_id"] is None else int(row["transfer_id"]),
    }


async def listing(
    db: Database,
    *,
    status: str | None = "pending",
    merchant_id: int | None = None,
    env: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[dict[str, Any]]:
    """Requests oldest first, as the operator works through them; `status` None is all."""
    rows, _ = await page(db, status=status, merchant_id=merchant_id, env=env, limit=limit)
    return rows


async def page(
    db: Database,
    *,
    status: str | None = "pending",
    merchant_id: int | None = None,
    env: str | None = None,
    limit: int = DEFAULT_LIMIT,
    after: tuple[int, int] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of `listing` after a decoded cursor (store.keyset.decode), and the cursor of
    the next page (None: the last)."""
    if status is not None and status not in STATUSES:
        raise CreditRequestError(f"status must be one of {', '.join(STATUSES)} or all")
    if env is not None:
        _check_env(env)
    if not 0 < limit <= MAX_LIMIT:
        raise CreditRequestError(f"limit must be 1 to {MAX_LIMIT}")
    where: list[str] = []
    args: list[object] = []
    for column, value in (("status", status), ("merchant_id", merchant_id), ("env", env)):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if after is not None:
        args.extend(after)
        at, row_id = len(args) - 1, len(args)
        where.append(f"(created_ms > ${at} OR (created_ms = ${at} AND id > ${row_id}))")
    args.append(limit + 1)
    sql = (
        f"SELECT {COLUMNS} FROM credit_requests"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY created_ms, id LIMIT ${len(args)}"
    )
    rows: Sequence[Row] = await db.read(lambda tx: tx.fetch(sql, *args))
    return [_view(row) for row in rows[:limit]], keyset.next_cursor(rows, limit, "created_ms")
