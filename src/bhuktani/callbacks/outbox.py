"""The callback outbox: enqueued with the state change, claimed with a lease, each attempt
recorded, retried on a bounded schedule.

Two kinds of callback share it, its signatures and its schedule: a payment's DLR
(event_type "payment", Khalti's form fields) and an event ("dispute.resolved",
"balance.low"), a JSON object in Standard Webhooks' shape, `{"type", "timestamp",
"data"}` (docs/API.md, "Callback events")."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bhuktani import audit, money
from bhuktani.callbacks import endpoints
from bhuktani.clock import nepal_time, now_ms
from bhuktani.store import Database, Row, Tx, keyset

# A DLR's event_type (the column's default); every other type is an event.
PAYMENT = "payment"
EVENT_TYPES = frozenset({"dispute.resolved", "balance.low"})


class Claimed(list["Due"]):
    """The callbacks a claim leased; held_back when due ones were left for a slot to
    free (their endpoint at its bound, or the claim full)."""

    def __init__(self, *, held_back: bool) -> None:
        super().__init__()
        self.held_back = held_back


@dataclass(frozen=True)
class Due:
    id: int
    event_id: str
    merchant_id: int
    env: str
    event_type: str
    # As queued: a DLR's form fields, or an event's JSON body, sent byte for byte.
    payload_json: str
    attempts: int
    # The lease this claim holds: only its holder records the attempt's outcome. A claim
    # takes only a lease that has run out (<= now) and sets now + lease_ms, so a later
    # claim's lease is always greater: the value names its claim.
    lease_until_ms: int
    # The endpoint as it is now, at the claim: None when the merchant has none set.
    url: str | None
    signing_secrets: list[str] = field(repr=False)

    @property
    def endpoint(self) -> tuple[int, str]:
        return (self.merchant_id, self.env)

    @property
    def is_event(self) -> bool:
        return self.event_type != PAYMENT

    def form_fields(self) -> dict[str, str]:
        """A DLR's fields, in dlr.md's order, then env."""
        assert not self.is_event, self.event_type
        fields: dict[str, str] = json.loads(self.payload_json)
        fields["env"] = self.env  # callbacks queued before the field was added
        return fields


async def _insert(
    tx: Tx,
    *,
    merchant_id: int,
    env: str,
    payment_id: int | None,
    event_type: str,
    url: str,
    payload_json: str,
) -> str:
    event_id = str(uuid.uuid4())
    now = now_ms()
    await tx.execute(
        "INSERT INTO callbacks (event_id, merchant_id, env, payment_id, event_type, url,"
        " payload_json, next_attempt_ms, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        event_id,
        merchant_id,
        env,
        payment_id,
        event_type,
        url,
        payload_json,
        now,
    )
    return event_id


async def enqueue(tx: Tx, payment: Row, *, state: str, detail: str) -> None:
    """Inside the transaction that made the payment final; nothing if the merchant has no
    callback URL for the payment's environment."""
    env = str(payment["env"])
    url = await endpoints.url_of(tx, int(payment["merchant_id"]), env)
    if not url:
        return
    fields = {
        "reference": str(payment["reference"]),
        "amount": money.format_rupees(int(payment["amount_paisa"])),
        "status": state,
        "detail": detail,
        "response_id": str(int(payment["id"])),
        "env": env,
    }
    await _insert(
        tx,
        merchant_id=int(payment["merchant_id"]),
        env=env,
        payment_id=int(payment["id"]),
        event_type=PAYMENT,
        url=url,
        payload_json=json.dumps(fields, separators=(",", ":")),
    )


def event_time(at_ms: int) -> str:
    """A time as events and the API tell it: ISO 8601 in Nepal, "2024-07-15T10:30:00+05:45"."""
    return nepal_time(at_ms, "seconds")


def event_body(event_type: str, at_ms: int, data: Mapping[str, Any]) -> str:
    """The JSON an event sends: Standard Webhooks' payload shape, so that a receiver's
    library parses it as it verifies it (`Webhook(secret).verify(body, headers)`)."""
    body = {"type": event_type, "timestamp": event_time(at_ms), "data": dict(data)}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


async def enqueue_event(
    tx: Tx,
    merchant_id: int,
    env: str,
    event_type: str,
    fields: Mapping[str, Any],
    *,
    payment_id: int | None = None,
) -> str | None:
    """Queue an event inside the transaction of the change it tells, signed and retried as
    a DLR; `fields` are its `data` (JSON values). Nothing is queued, and None returned,
    when the merchant has no callback URL for `env`; otherwise the event's id (the
    `webhook-id` it is sent with). `payment_id` names the payment it is about, if any."""
    assert event_type in EVENT_TYPES, event_type
    url = await endpoints.url_of(tx, merchant_id, env)
    if not url:
        return None
    return await _insert(
        tx,
        merchant_id=merchant_id,
        env=env,
        payment_id=payment_id,
        event_type=event_type,
        url=url,
        payload_json=event_body(event_type, now_ms(), fields),
    )


# Due callbacks in turns: every endpoint's first before any endpoint's second, so that one
# endpoint's backlog never fills a claim. A window function cannot take FOR UPDATE; the
# UPDATE that leases the chosen rows checks and locks them instead (see claim_due).
_DUE_IN_TURNS = (
    "SELECT id, merchant_id, env FROM (SELECT id, merchant_id, env, next_attempt_ms,"
    " ROW_NUMBER() OVER (PARTITION BY merchant_id, env ORDER BY next_attempt_ms, id) AS turn"
    " FROM callbacks WHERE status = 'pending' AND next_attempt_ms <= $1"
    " AND lease_until_ms <= $1) due WHERE turn <= $2 ORDER BY turn, next_attempt_ms, id"
    " LIMIT $3"
)


def _choose(
    candidates: Sequence[Row], busy: Mapping[tuple[int, str], int], per_endpoint: int, limit: int
) -> list[int]:
    taken: dict[tuple[int, str], int] = {}
    chosen: list[int] = []
    for row in candidates:
        endpoint = (int(row["merchant_id"]), str(row["env"]))
        if busy.get(endpoint, 0) + taken.get(endpoint, 0) >= per_endpoint:
            continue
        taken[endpoint] = taken.get(endpoint, 0) + 1
        chosen.append(int(row["id"]))
        if len(chosen) == limit:
            break
    return chosen


async def claim_due(
    db: Database,
    *,
    limit: int,
    lease_ms: int,
    per_endpoint: int = 1_000_000,
    busy: Mapping[tuple[int, str], int] | None = None,
) -> Claimed:
    """Lease up to `limit` due callbacks, at most `per_endpoint` for each (merchant,
    environment) counting the `busy` ones the caller is still sending, with the endpoint
    (URL, secrets in force) as it is now."""
    assert limit > 0 and per_endpoint > 0 and lease_ms > 0
    busy = busy or {}
    now = now_ms()
    lease_until = now + lease_ms

    async def claim(
        tx: Tx,
    ) -> tuple[Sequence[Row], dict[tuple[int, str], endpoints.Endpoint], bool]:
        # One turn more than an endpoint may take, to tell that some of its callbacks wait
        # (held_back); a busy endpoint's rows are at most that many of the candidates.
        turns = per_endpoint + 1
        scan = limit + turns * len(busy)
        candidates = await tx.fetch(_DUE_IN_TURNS, now, turns, scan)
        chosen = _choose(candidates, busy, per_endpoint, limit)
        held_back = len(chosen) < len(candidates) or len(chosen) == limit
        if not chosen:
            return [], {}, held_back
        ids = ", ".join(f"${n}" for n in range(3, 3 + len(chosen)))
        # Checked again, and locked without waiting: on PostgreSQL another deliverer may
        # have leased a row since the SELECT, or be leasing it now.
        rows = await tx.fetch(
            "UPDATE callbacks SET lease_until_ms = $2 WHERE id IN (SELECT id FROM callbacks"
            f" WHERE id IN ({ids}) AND status = 'pending' AND lease_until_ms <= $1"
            " FOR UPDATE SKIP LOCKED)"
            " RETURNING id, event_id, merchant_id, env, event_type, payload_json, attempts",
            now,
            lease_until,
            *chosen,
        )
        found = await endpoints.read(tx, ((int(r["merchant_id"]), str(r["env"])) for r in rows))
        return rows, found, held_back

    # A whole transaction (db.run): on SQLite it queues for the write lock with the
    # payments, and holds it for no event-loop round trip. This poll runs every second.
    rows, found, held_back = await db.run(claim)
    claimed = Claimed(held_back=held_back)
    for row in sorted(rows, key=lambda r: int(r["id"])):
        endpoint = found.get((int(row["merchant_id"]), str(row["env"])))
        claimed.append(
            Due(
                id=int(row["id"]),
                event_id=str(row["event_id"]),
                merchant_id=int(row["merchant_id"]),
                env=str(row["env"]),
                event_type=str(row["event_type"]),
                payload_json=str(row["payload_json"]),
                attempts=int(row["attempts"]),
                lease_until_ms=lease_until,
                url=None if endpoint is None else endpoint.url,
                signing_secrets=[] if endpoint is None else endpoint.signing_secrets(now),
            )
        )
    return claimed


async def record_attempt(
    db: Database,
    due: Due,
    *,
    http_status: int | None,
    latency_ms: int,
    error: str | None,
    next_attempt_ms: int | None,
) -> str:
    """Record one attempt; the callback is delivered on a 2xx, expired when the schedule
    has no next attempt, pending otherwise. Returns the new status, or "lost" when the
    lease had run out and another claim holds the callback (the attempt is on record, the
    outcome is that claim's to record)."""
    delivered = http_status is not None and 200 <= http_status < 300
    status = "delivered" if delivered else "pending" if next_attempt_ms is not None else "expired"
    now = now_ms()

    async def record(tx: Tx) -> int:
        await tx.execute(
            "INSERT INTO callback_attempts (callback_id, attempted_ms, http_status, latency_ms,"
            " error) VALUES ($1, $2, $3, $4, $5)",
            due.id,
            now,
            http_status,
            latency_ms,
            None if error is None else error[:200],
        )
        return await tx.execute(
            "UPDATE callbacks SET status = $2, attempts = attempts + 1, next_attempt_ms = $3,"
            " lease_until_ms = 0, delivered_ms = $4, url = COALESCE($6, url)"
            " WHERE id = $1 AND status = 'pending' AND lease_until_ms = $5",
            due.id,
            status,
            None if delivered else next_attempt_ms,
            now if delivered else None,
            due.lease_until_ms,
            due.url,
        )

    changed = await db.run(record)
    return status if changed == 1 else "lost"


async def retry_now(db: Database, callback_id: int, *, operator: str) -> bool:
    """An operator's retry: due at once, delivered or expired ones included, audited
    ("callbacks.retry") in the same transaction. A lease is left alone: a callback being
    sent now is not sent twice at once."""

    async def retry(tx: Tx) -> bool:
        row = await tx.fetchrow(
            "SELECT merchant_id, env, event_type, status, attempts FROM callbacks WHERE id = $1",
            callback_id,
        )
        if row is None:
            return False
        await tx.execute(
            "UPDATE callbacks SET status = 'pending', next_attempt_ms = $2 WHERE id = $1",
            callback_id,
            now_ms(),
        )
        await audit.record(
            tx,
            operator=operator,
            action="callbacks.retry",
            merchant_id=int(row["merchant_id"]),
            env=str(row["env"]),
            subject=f"callback {callback_id}",
            details={
                "callback_id": callback_id,
                "event_type": str(row["event_type"]),
                "status_before": str(row["status"]),
                "attempts_before": int(row["attempts"]),
            },
        )
        return True

    return await db.run(retry)


async def listing(db: Database, reference: str | None, limit: int = 100) -> list[dict[str, object]]:
    """Callbacks newest first, DLRs and events, each with its attempts; `reference` keeps
    those about that payment (its DLR, its disputes' events). An event about no payment
    (balance.low) has reference None."""
    rows, _ = await page(db, reference, limit)
    return rows


async def page(
    db: Database, reference: str | None, limit: int, after: tuple[int, int] | None = None
) -> tuple[list[dict[str, object]], str | None]:
    """A page of `listing` after a decoded cursor (store.keyset.decode: its place is the
    callback's id), and the cursor of the next page (None: the last)."""
    where: list[str] = []
    args: list[object] = []
    if reference is not None:
        args.append(reference)
        where.append(f"p.reference = ${len(args)}")
    if after is not None:
        args.append(after[1])
        where.append(f"c.id < ${len(args)}")
    args.append(limit + 1)
    query = (
        "SELECT c.id, c.event_id, c.merchant_id, c.env, c.event_type, p.reference, c.url,"
        " c.status, c.attempts, c.next_attempt_ms, c.created_ms, c.delivered_ms"
        " FROM callbacks c LEFT JOIN payments p ON p.id = c.payment_id"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY c.id DESC LIMIT ${len(args)}"
    )

    async def read(tx: Tx) -> tuple[list[dict[str, object]], str | None]:
        rows = await tx.fetch(query, *args)
        result = []
        for row in rows[:limit]:
            attempts = await tx.fetch(
                "SELECT attempted_ms, http_status, latency_ms, error FROM callback_attempts"
                " WHERE callback_id = $1 ORDER BY id",
                int(row["id"]),
            )
            result.append({**dict(row), "attempt_log": [dict(a) for a in attempts]})
        return result, keyset.next_cursor(rows, limit, "id")

    # A read takes no write lock (db.read), so listing never holds back a payment.
    return await db.read(read)
