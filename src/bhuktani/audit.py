"""The audit log: every operator action (merchants, tokens, credits, charges, disputes,
resolve, refund), who did it, to whom, when, with what. Appended in the transaction of
the action it records, so an action and its record commit together or not at all; never
changed."""

from __future__ import annotations

import getpass
import json
from collections.abc import Mapping
from typing import Any

from bhuktani.clock import now_ms
from bhuktani.store import Database, Row, Tx

MAX_OPERATOR_CHARS = 100
MAX_ACTION_CHARS = 64
MAX_SUBJECT_CHARS = 100
# The listing's default and largest page.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def operator_of(given: str | None) -> str:
    """Who acts: the name given, or the OS user running the command."""
    if given is not None and given.strip():
        return given.strip()[:MAX_OPERATOR_CHARS]
    try:
        return getpass.getuser()[:MAX_OPERATOR_CHARS]
    except (OSError, KeyError):
        raise ValueError("no OS user to record; name the operator") from None


async def record(
    tx: Tx,
    *,
    operator: str,
    action: str,
    merchant_id: int | None = None,
    env: str | None = None,
    subject: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> int:
    """Append one entry inside the caller's transaction; returns its id. `action` is a
    dotted name ("merchant.create", "credits.load"), `subject` what it acted on (a token's
    hint, a payment's reference, a request's id), `details` the values it used."""
    assert operator and len(operator) <= MAX_OPERATOR_CHARS, operator
    assert action and len(action) <= MAX_ACTION_CHARS, action
    row = await tx.fetchrow(
        "INSERT INTO audit_log (at_ms, operator, action, merchant_id, env, subject,"
        " details_json) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        now_ms(),
        operator,
        action,
        merchant_id,
        env,
        None if subject is None else subject[:MAX_SUBJECT_CHARS],
        json.dumps(dict(details or {}), separators=(",", ":"), sort_keys=True, default=str),
    )
    assert row is not None
    return int(row["id"])


def _entry(row: Row) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "at_ms": int(row["at_ms"]),
        "operator": str(row["operator"]),
        "action": str(row["action"]),
        "merchant_id": None if row["merchant_id"] is None else int(row["merchant_id"]),
        "env": row["env"],
        "subject": row["subject"],
        "details": json.loads(str(row["details_json"])),
    }


async def listing(
    db: Database,
    *,
    merchant_id: int | None = None,
    action: str | None = None,
    before_id: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[dict[str, Any]]:
    """Entries newest first; `action` matches a name or its prefix ("credits" or
    "credits.load"); `before_id` pages on from the last id seen."""
    assert 0 < limit <= MAX_LIMIT, limit
    where: list[str] = []
    args: list[object] = []
    if merchant_id is not None:
        args.append(merchant_id)
        where.append(f"merchant_id = ${len(args)}")
    if action is not None:
        args += [action, action + ".%"]
        where.append(f"(action = ${len(args) - 1} OR action LIKE ${len(args)})")
    if before_id is not None:
        args.append(before_id)
        where.append(f"id < ${len(args)}")
    args.append(limit)
    sql = (
        "SELECT id, at_ms, operator, action, merchant_id, env, subject, details_json"
        " FROM audit_log"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY id DESC LIMIT ${len(args)}"
    )
    rows = await db.read(lambda tx: tx.fetch(sql, *args))
    return [_entry(row) for row in rows]


def acted_on(entry: Mapping[str, Any]) -> list[str]:
    """What an entry acted on, a line each, as `bhuktani audit` and the console show it."""
    lines = []
    if entry["merchant_id"] is not None:
        lines.append(f"merchant {entry['merchant_id']}")
    if entry["env"] is not None:
        lines.append(f"env {entry['env']}")
    if entry["subject"] is not None:
        lines.append(f"subject {entry['subject']}")
    return lines


def detail_lines(entry: Mapping[str, Any]) -> list[str]:
    """An entry's values one a line, "name=value": text as it is, the rest as JSON."""
    return [
        f"{name}={value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}"
        for name, value in entry["details"].items()
    ]
