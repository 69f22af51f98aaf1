"""The callback outbox: enqueued with the state change, claimed with a lease, each attempt
recorded, retried on a bounded schedule."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from bhuktani import money
from bhuktani.clock import now_ms
from bhuktani.store import Database, Row, Tx


@dataclass(frozen=True)
class Due:
    id: int
    event_id: str
    merchant_id: int
    env: str
    url: str
    fields: dict[str, str]
    attempts: int
    secret: str | None


async def enqueue(tx: Tx, payment: Row, *, state: str, detail: str) -> None:
    """Inside the transaction that made the payment final; nothing if no callback URL."""
    merchant = await tx.fetchrow(
        "SELECT callback_url FROM merchants WHERE id = $1", int(payment["merchant_id"])
    )
    if merchant is None or not merchant["callback_url"]:
        return
    fields = {
        "reference": str(payment["reference"]),
        "amount": money.format_rupees(int(payment["amount_paisa"])),
        "status": state,
        "detail": detail,
        "response_id": str(int(payment["id"])),
    }
    now = now_ms()
    await tx.execute(
        "INSERT INTO callbacks (event_id, merchant_id, env, payment_id, url, payload_json,"
        " next_attempt_ms, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        str(uuid.uuid4()),
        int(payment["merchant_id"]),
        str(payment["env"]),
        int(payment["id"]),
        str(merchant["callback_url"]),
        json.dumps(fields, separators=(",", ":")),
        now,
    )


async def claim_due(db: Database, *, limit: int, lease_ms: int) -> Sequence[Due]:
    now = now_ms()

    async def claim(tx: Tx) -> tuple[Sequence[Row], dict[int, str | None]]:
        rows = await tx.fetch(
            "UPDATE callbacks SET lease_until_ms = $2 WHERE id IN ("
            " SELECT id FROM callbacks WHERE status = 'pending' AND next_attempt_ms <= $1"
            " AND lease_until_ms <= $1 ORDER BY next_attempt_ms LIMIT $3 FOR UPDATE SKIP LOCKED)"
            " RETURNING id, event_id, merchant_id, env, url, payload_json, attempts",
            now,
            now + lease_ms,
            limit,
        )
        secrets: dict[int, str | None] = {}
        for row in rows:
            merchant_id = int(row["merchant_id"])
            if merchant_id not in secrets:
                found = await tx.fetchrow(
                    "SELECT callback_secret FROM merchants WHERE id = $1", merchant_id
                )
                secrets[merchant_id] = None if found is None else found["callback_secret"]
        return rows, secrets

    # A whole transaction (db.run): on SQLite it queues for the write lock with the
    # payments, and holds it for no event-loop round trip. This poll runs every second.
    rows, secrets = await db.run(claim)
    return [
        Due(
            id=int(row["id"]),
            event_id=str(row["event_id"]),
            merchant_id=int(row["merchant_id"]),
            env=str(row["env"]),
            url=str(row["url"]),
            fields=json.loads(str(row["payload_json"])),
            attempts=int(row["attempts"]),
            secret=secrets[int(row["merchant_id"])],
        )
        for row in rows
    ]


async def record_attempt(
    db: Database,
    callback_id: int,
    *,
    http_status: int | None,
    latency_ms: int,
    error: str | None,
    next_attempt_ms: int | None,
) -> str:
    """Record one attempt; the callback is delivered on a 2xx, expired when the schedule
    has no next attempt, pending otherwise. Returns the new status."""
    delivered = http_status is not None and 200 <= http_status < 300
    status = "delivered" if delivered else "pending" if next_attempt_ms is not None else "expired"
    now = now_ms()

    async def record(tx: Tx) -> None:
        await tx.execute(
            "INSERT INTO callback_attempts (callback_id, attempted_ms, http_status, latency_ms,"
            " error) VALUES ($1, $2, $3, $4, $5)",
            callback_id,
            now,
            http_status,
            latency_ms,
            None if error is None else error[:200],
        )
        await tx.execute(
            "UPDATE callbacks SET status = $2, attempts = attempts + 1, next_attempt_ms = $3,"
            " lease_until_ms = 0, delivered_ms = $4 WHERE id = $1 AND status = 'pending'",
            callback_id,
            status,
            None if delivered else next_attempt_ms,
            now if delivered else None,
        )

    await db.run(record)
    return status


async def retry_now(db: Database, callback_id: int) -> bool:
    """An operator's retry: due at once, delivered or expired ones included."""
    changed = await db.run(
        lambda tx: tx.execute(
            "UPDATE callbacks SET status = 'pending', next_attempt_ms = $2, lease_until_ms = 0"
            " WHERE id = $1",
            callback_id,
            now_ms(),
        )
    )
    return changed == 1


async def listing(db: Database, reference: str | None, limit: int = 100) -> list[dict[str, object]]:
    query = (
        "SELECT c.id, c.event_id, c.merchant_id, c.env, p.reference, c.url, c.status,"
        " c.attempts, c.next_attempt_ms, c.created_ms, c.delivered_ms"
        " FROM callbacks c JOIN payments p ON p.id = c.payment_id"
    )

    async def read(tx: Tx) -> list[dict[str, object]]:
        if reference is None:
            rows = await tx.fetch(query + " ORDER BY c.id DESC LIMIT $1", limit)
        else:
            rows = await tx.fetch(
                query + " WHERE p.reference = $1 ORDER BY c.id DESC LIMIT $2", reference, limit
            )
        result = []
        for row in rows:
            attempts = await tx.fetch(
                "SELECT attempted_ms, http_status, latency_ms, error FROM callback_attempts"
                " WHERE callback_id = $1 ORDER BY id",
                int(row["id"]),
            )
            result.append({**dict(row), "attempt_log": [dict(a) for a in attempts]})
        return result

    # A read takes no write lock (db.read), so listing never holds back a payment.
    return await db.read(read)
