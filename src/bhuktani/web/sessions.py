"""Signed-in browsers, and the limit on failed sign-ins.

The session cookie holds 32 random bytes; the database keeps their SHA-256, so a copy of
the database signs nobody in. Each session has a CSRF token that every form posts back.
Failed sign-ins are counted per address and per client in fixed windows, in the database,
so that every serving process counts the same ones."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from bhuktani.clock import now_ms
from bhuktani.store import Database, Tx
from bhuktani.web.users import USER_COLUMNS, User

COOKIE = "bhuktani_session"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str
    expires_ms: int

    def csrf_ok(self, given: object) -> bool:
        return isinstance(given, str) and hmac.compare_digest(
            given.encode(), self.csrf_token.encode()
        )


async def start(db: Database, user: User, ttl_s: int) -> str:
    """A new session for the user: the cookie's value."""
    token = secrets.token_urlsafe(32)
    now = now_ms()
    await db.once(
        "INSERT INTO web_sessions (token_hash, user_id, csrf_token, created_ms, expires_ms)"
        " VALUES ($1, $2, $3, $4, $5)",
        _hash(token),
        user.id,
        secrets.token_urlsafe(32),
        now,
        now + ttl_s * 1000,
    )
    return token


async def current(db: Database, token: str | None) -> Session | None:
    """The live session of a cookie: not expired, its user not disabled."""
    if not token or len(token) > 100:
        return None
    columns = ", ".join(f"u.{c.strip()}" for c in USER_COLUMNS.split(","))
    row = await db.read(
        lambda tx: tx.fetchrow(
            f"SELECT {columns}, s.csrf_token, s.expires_ms FROM web_sessions s"
            " JOIN web_users u ON u.id = s.user_id"
            " WHERE s.token_hash = $1 AND s.expires_ms > $2 AND NOT u.disabled",
            _hash(token),
            now_ms(),
        )
    )
    if row is None:
        return None
    return Session(User.of(row), str(row["csrf_token"]), int(row["expires_ms"]))


async def end(db: Database, token: str | None) -> None:
    if token:
        await db.once("DELETE FROM web_sessions WHERE token_hash = $1", _hash(token))


async def end_others(db: Database, user: User, keep_token: str | None) -> None:
    """Sign the user out everywhere but here (after a password change)."""
    await db.once(
        "DELETE FROM web_sessions WHERE user_id = $1 AND token_hash <> $2",
        user.id,
        _hash(keep_token or ""),
    )


async def sweep(db: Database) -> None:
    await db.once("DELETE FROM web_sessions WHERE expires_ms <= $1", now_ms())


# Failed sign-ins.


def throttle_keys(email: str, client: str) -> tuple[str, str]:
    return (f"email:{email.strip().lower()[:300]}", f"client:{client[:300]}")


async def refused_for_s(db: Database, limits: Sequence[tuple[str, int]], *, window_s: int) -> int:
    """Seconds until these keys, each with its most failures, may try again (0: now)."""
    now = now_ms()

    async def body(tx: Tx) -> int:
        wait_ms = 0
        for key, max_failures in limits:
            row = await tx.fetchrow(
                "SELECT window_start_ms, failures FROM login_failures WHERE key = $1", key
            )
            if row is None or int(row["failures"]) < max_failures:
                continue
            ends_ms = int(row["window_start_ms"]) + window_s * 1000
            wait_ms = max(wait_ms, ends_ms - now)
        return wait_ms

    wait_ms = await db.read(body)
    return 0 if wait_ms <= 0 else -(-wait_ms // 1000)


async def failed(db: Database, keys: tuple[str, ...], *, window_s: int) -> None:
    """Count one failure against each key, in its current window (a new one once over)."""
    now = now_ms()

    async def body(tx: Tx) -> None:
        for key in keys:
            await tx.execute(
                "INSERT INTO login_failures (key, window_start_ms, failures) VALUES ($1, $2, 1)"
                " ON CONFLICT (key) DO UPDATE SET"
                " failures = CASE WHEN login_failures.window_start_ms <= $3 THEN 1"
                " ELSE login_failures.failures + 1 END,"
                " window_start_ms = CASE WHEN login_failures.window_start_ms <= $3 THEN $2"
                " ELSE login_failures.window_start_ms END",
                key,
                now,
                now - window_s * 1000,
            )

    await db.run(body)


async def succeeded(db: Database, email_key: str) -> None:
    """A right password forgets the address's failures (not the client's)."""
    await db.once("DELETE FROM login_failures WHERE key = $1", email_key)
