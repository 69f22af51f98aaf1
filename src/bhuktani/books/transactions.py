"""The merchant's transaction list (GET /api/transactions/): its payments newest first,
filtered, a page at a time.

Pages are walked by keyset on (created_ms, id) along payments_merchant_time (merchant_id,
env, created_ms, id), read backwards: a page costs its own rows whatever the merchant's
history, and payments made while a client walks never shift the pages after its cursor
(they are newer than it). There is no OFFSET anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from bhuktani import logs, money
from bhuktani.books.statements import parse_day
from bhuktani.clock import day_end_ms, day_start_ms, nepal_time
from bhuktani.domain import State
from bhuktani.errors import field_error
from bhuktani.ledger import accounts as ledger
from bhuktani.payments import lookup, policy
from bhuktani.runtime import Gateway
from bhuktani.services import registry
from bhuktani.services.fields import loose_int
from bhuktani.store import Database, Row, Tx, keyset

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_REFERENCE_CHARS = 50
# The states as the status look-up shows them.
STATES = (State.SUCCESS, State.FAILED, State.PROCESSING, State.QUEUED)
# Payments whose refunds one statement reads: a page of 500 is 5 statements, all of one
# text (the last chunk is padded), so PostgreSQL prepares it once.
REFUND_CHUNK = 100

_COLUMNS = (
    "id, reference, service, isp, state, isp_status, detail, amount_paisa, charge_paisa, created_ms"
)


@dataclass(frozen=True)
class Filters:
    from_day: date | None = None
    to_day: date | None = None
    state: State | None = None
    service: str | None = None
    reference_prefix: str | None = None
    limit: int = DEFAULT_LIMIT
    # Rows strictly older than this (created_ms, id) in the walk's order.
    after: tuple[int, int] | None = None


def _day(data: dict[str, Any], field: str) -> date | None:
    raw = data.get(field)
    if raw in (None, ""):
        return None
    day = parse_day(raw)
    if day is None:
        raise field_error(field, f"{field} must be a date written YYYY-MM-DD")
    return day


def parse_filters(data: dict[str, Any]) -> Filters:
    """The filters of a request (query string or body), each refused by its name."""
    from_day, to_day = _day(data, "from"), _day(data, "to")
    if from_day is not None and to_day is not None and to_day < from_day:
        raise field_error("to", "to is before from")
    state = data.get("state")
    if state in (None, ""):
        state = None
    elif state not in STATES:
        raise field_error("state", "state is one of " + ", ".join(STATES))
    service = data.get("service")
    if service in (None, ""):
        service = None
    elif not isinstance(service, str) or (
        service not in registry.BY_SLUG and service not in registry.BY_ISP
    ):
        raise field_error("service", "service is a service group's slug or an ISP's slug")
    reference = data.get("reference")
    if reference in (None, ""):
        reference = None
    elif not isinstance(reference, str) or len(reference) > MAX_REFERENCE_CHARS:
        raise field_error("reference", "reference is the start of a reference, 1 to 50 characters")
    limit = loose_int(data.get("limit", DEFAULT_LIMIT))
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise field_error("limit", f"limit is a whole number from 1 to {MAX_LIMIT}")
    cursor = data.get("cursor")
    after = None
    if cursor not in (None, ""):
        after = keyset.decode(cursor) if isinstance(cursor, str) else None
        if after is None:
            raise field_error("cursor", "cursor is the next_cursor of a previous answer")
    return Filters(
        from_day=from_day,
        to_day=to_day,
        state=None if state is None else State(state),
        service=service,
        reference_prefix=reference,
        limit=limit,
        after=after,
    )


def page_query(merchant_id: int, env: str, filters: Filters) -> tuple[str, list[Any]]:
    """The page's statement and its arguments: one more row than the limit, to tell
    whether another page follows."""
    args: list[Any] = [merchant_id, env]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where = ["merchant_id = $1", "env = $2"]
    if filters.from_day is not None:
        where.append(f"created_ms >= {arg(day_start_ms(filters.from_day))}")
    if filters.to_day is not None:
        where.append(f"created_ms < {arg(day_end_ms(filters.to_day))}")
    if filters.after is not None:
        created_ms, payment_id = filters.after
        where.append(f"(created_ms, id) < ({arg(created_ms)}, {arg(payment_id)})")
    if filters.state in (State.SUCCESS, State.FAILED):
        where.append(f"state = {arg(filters.state.value)}")
    elif filters.state is not None:
        # Processing in the ledger; shown Queued for a single-step service.
        single_step = ", ".join(arg(slug) for slug in sorted(registry.SINGLE_STEP_SLUGS))
        where.append("state = 'Processing'")
        if filters.state is State.QUEUED:
            where.append(f"service IN ({single_step})" if single_step else "1 = 0")
        elif single_step:
            where.append(f"service NOT IN ({single_step})")
    if filters.service is not None:
        slug = arg(filters.service)
        where.append(f"(service = {slug} OR isp = {slug})")
    if filters.reference_prefix is not None:
        prefix = filters.reference_prefix
        # substr, not LIKE: SQLite's LIKE ignores case, and _ and % would need escaping.
        where.append(f"substr(reference, 1, {len(prefix)}) = {arg(prefix)}")
    sql = (
        f"SELECT {_COLUMNS} FROM payments WHERE {' AND '.join(where)}"
        f" ORDER BY created_ms DESC, id DESC LIMIT {arg(filters.limit + 1)}"
    )
    return sql, args


async def _refunds(tx: Tx, payment_ids: Sequence[int]) -> dict[int, list[Row]]:
    """Each payment's refunds, as the status look-up counts them (ledger.refunds_of)."""
    found: dict[int, list[Row]] = {payment_id: [] for payment_id in payment_ids}
    for start in range(0, len(payment_ids), REFUND_CHUNK):
        chunk = list(payment_ids[start : start + REFUND_CHUNK])
        chunk += [chunk[0]] * (REFUND_CHUNK - len(chunk))
        placeholders = ", ".join(f"${n}" for n in range(1, REFUND_CHUNK + 1))
        rows = await tx.fetch(
            "SELECT t.payment_id, t.amount_paisa, t.note, t.created_ms"
            f" {ledger.refunds_of(f'IN ({placeholders})')} ORDER BY t.id",
            *chunk,
        )
        for row in rows:
            found[int(row["payment_id"])].append(row)
    return found


def render(row: Row, refunds: Sequence[Row]) -> dict[str, Any]:
    """A payment as the status look-up shows it, with its service, time and charge."""
    return {
        **lookup._render(row, refunds),
        "service": str(row["service"]),
        "isp": str(row["isp"]),
        "created_at": nepal_time(int(row["created_ms"])),
        "charge": money.to_rupees(int(row["charge_paisa"])),
    }


async def page(
    db: Database, merchant_id: int, env: str, filters: Filters
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the merchant's payments, newest first, and the cursor of the next."""
    sql, args = page_query(merchant_id, env, filters)

    async def body(tx: Tx) -> tuple[Sequence[Row], dict[int, list[Row]]]:
        rows = await tx.fetch(sql, *args)
        return rows, await _refunds(tx, [int(r["id"]) for r in rows[: filters.limit]])

    rows, refunds = await db.read(body)
    shown = rows[: filters.limit]
    following = keyset.next_cursor(rows, filters.limit, "created_ms")
    return [render(row, refunds[int(row["id"])]) for row in shown], following


async def transactions(
    gateway: Gateway, data: dict[str, Any], token: str | None, client: str
) -> dict[str, Any]:
    principal = await policy.caller(gateway, token, client)
    logs.bind(merchant_id=principal.merchant_id, env=principal.env)
    filters = parse_filters(data)
    results, next_cursor = await page(gateway.db, principal.merchant_id, principal.env, filters)
    return {"status": True, "results": results, "next_cursor": next_cursor}
