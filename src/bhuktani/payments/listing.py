"""The operator's list of payments (`bhuktani payment list`): every merchant's, newest
first, filtered, a page at a time.

Pages are walked by keyset on (created_ms, id), as the merchant's transaction list walks
them (books/transactions.py; the cursor is store/keyset.py's): no OFFSET, and payments made
while the operator walks are newer than the cursor, so they never shift the pages after
it. Across merchants no index leads with created_ms; a merchant's list (merchant_id,
env) reads along payments_merchant_time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bhuktani import money
from bhuktani.clock import nepal_time
from bhuktani.domain import Env, State
from bhuktani.store import Database, Row, keyset

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

_COLUMNS = (
    "id, merchant_id, env, reference, service, isp, username, amount_paisa, charge_paisa,"
    " state, isp_status, flagged, flag_reason, created_ms, updated_ms"
)

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "Filters", "page"]


@dataclass(frozen=True)
class Filters:
    flagged: bool = False
    state: State | None = None
    merchant_id: int | None = None
    # A service group's slug or one ISP's.
    service: str | None = None
    env: Env | None = None
    # Created at or after since_ms, before until_ms.
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = DEFAULT_LIMIT
    # Rows strictly older than this (created_ms, id): where the previous page ended.
    after: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        assert 0 < self.limit <= MAX_LIMIT, self.limit


def page_query(filters: Filters) -> tuple[str, list[Any]]:
    """The page's statement and its arguments: one row more than the limit, to tell
    whether another page follows."""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where: list[str] = []
    if filters.flagged:
        where.append(f"flagged = {arg(True)}")
    if filters.state is not None:
        where.append(f"state = {arg(filters.state.value)}")
    if filters.merchant_id is not None:
        where.append(f"merchant_id = {arg(filters.merchant_id)}")
    if filters.env is not None:
        where.append(f"env = {arg(filters.env.value)}")
    if filters.service is not None:
        slug = arg(filters.service)
        where.append(f"(service = {slug} OR isp = {slug})")
    if filters.since_ms is not None:
        where.append(f"created_ms >= {arg(filters.since_ms)}")
    if filters.until_ms is not None:
        where.append(f"created_ms < {arg(filters.until_ms)}")
    if filters.after is not None:
        created_ms, payment_id = filters.after
        where.append(f"(created_ms, id) < ({arg(created_ms)}, {arg(payment_id)})")
    sql = (
        f"SELECT {_COLUMNS} FROM payments"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY created_ms DESC, id DESC LIMIT {arg(filters.limit + 1)}"
    )
    return sql, args


def render(row: Row) -> dict[str, Any]:
    """A payment as the operator's list shows it (and the first part of `payment show`,
    operator.show): JSON-ready, amounts in rupees as text
    and in paisa, times in Nepal with their offset."""
    return {
        "id": int(row["id"]),
        "merchant_id": int(row["merchant_id"]),
        "env": str(row["env"]),
        "reference": str(row["reference"]),
        "service": str(row["service"]),
        "isp": str(row["isp"]),
        "username": str(row["username"]),
        "amount": money.format_rupees(int(row["amount_paisa"])),
        "amount_paisa": int(row["amount_paisa"]),
        "charge_paisa": int(row["charge_paisa"]),
        "state": str(row["state"]),
        "isp_status": str(row["isp_status"]),
        "flagged": bool(row["flagged"]),
        # Why the payment waits for an operator (records.flag); None when not flagged.
        "flag_reason": None if row["flag_reason"] is None else str(row["flag_reason"]),
        "created_at": nepal_time(int(row["created_ms"])),
        "updated_at": nepal_time(int(row["updated_ms"])),
    }


async def page(db: Database, filters: Filters) -> tuple[list[dict[str, Any]], str | None]:
    """A page of payments, newest first, and the cursor of the next (None: the last)."""
    sql, args = page_query(filters)
    rows: Sequence[Row] = await db.read(lambda tx: tx.fetch(sql, *args))
    following = keyset.next_cursor(rows, filters.limit, "created_ms")
    return [render(row) for row in rows[: filters.limit]], following
