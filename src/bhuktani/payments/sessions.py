"""Sessions of details calls: the prices a merchant was shown, bound to its merchant,
environment, service, ISP and username; expiring, and spent by one payment."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import orjson

from bhuktani.clock import now_ms
from bhuktani.errors import CannotFulfil
from bhuktani.isps.base import Subscriber
from bhuktani.isps.codec import subscriber_from_json, subscriber_to_json
from bhuktani.merchants.service import Principal
from bhuktani.store import Database, Tx, UniqueViolation, query_row

T = TypeVar("T")

# Ids are random below 2**53 (exact in any JSON client), so they say nothing about volume.
ID_LIMIT = 2**53
ID_ATTEMPTS = 5


def random_id() -> int:
    return 1 + secrets.randbelow(ID_LIMIT - 1)


@dataclass(frozen=True)
class Session:
    id: int
    isp: str
    username: str
    subscriber: Subscriber


_INSERT = (
    "INSERT INTO sessions (id, merchant_id, env, service, isp, username, reference,"
    " offer_json, expires_ms, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
)


@dataclass(frozen=True)
class NewSession:
    """What a details call keeps as a session: the subscriber as priced for this merchant,
    environment, service and ISP, and how long the offer stands."""

    principal: Principal
    service: str
    isp: str
    subscriber: Subscriber
    reference: str | None
    ttl_s: int

    def values(self) -> tuple[int, *tuple[object, ...]]:
        """Its columns for _INSERT, under a fresh random id (the first)."""
        now = now_ms()
        return (
            random_id(),
            self.principal.merchant_id,
            self.principal.env,
            self.service,
            self.isp,
            self.subscriber.username,
            self.reference,
            orjson.dumps(subscriber_to_json(self.subscriber)).decode(),
            now + self.ttl_s * 1000,
            now,
        )


async def insert(tx: Tx, new: NewSession) -> int:
    """The session under a fresh random id, in the caller's transaction; UniqueViolation
    in the (one in billions) case the id is taken, for `fresh_id` to draw again."""
    values = new.values()
    await tx.execute(_INSERT, *values)
    return values[0]


async def fresh_id(attempt: Callable[[], Awaitable[T]]) -> T:
    """Run `attempt`, which inserts a session, again while its random id is taken."""
    for _ in range(ID_ATTEMPTS):
        try:
            return await attempt()
        except UniqueViolation:
            continue
    raise RuntimeError("could not draw a free session id")


async def open_session(db: Database, new: NewSession) -> int:
    """The session in one statement committed on its own: on PostgreSQL one round trip,
    not three (BEGIN, INSERT, COMMIT)."""

    async def attempt() -> int:
        values = new.values()
        await db.once(_INSERT, *values)
        return values[0]

    return await fresh_id(attempt)


async def load(db: Database, principal: Principal, service: str, session_id: int) -> Session:
    """The session if it is this merchant's, in this environment and service, and usable."""
    row = await query_row(
        db,
        "SELECT merchant_id, env, service, isp, username, offer_json, expires_ms, payment_id"
        " FROM sessions WHERE id = $1",
        session_id,
    )
    if (
        row is None
        or int(row["merchant_id"]) != principal.merchant_id
        or row["env"] != principal.env
        or row["service"] != service
    ):
        raise CannotFulfil("Invalid session")
    if row["payment_id"] is not None:
        raise CannotFulfil("Session already used for a payment")
    if int(row["expires_ms"]) <= now_ms():
        raise CannotFulfil("Session expired; fetch the details again")
    subscriber = subscriber_from_json(orjson.loads(str(row["offer_json"])))
    return Session(session_id, str(row["isp"]), str(row["username"]), subscriber)
