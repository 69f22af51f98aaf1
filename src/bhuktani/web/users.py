"""Who signs in to the pages: a merchant's staff (role `merchant`, one merchant) and the
gateway's operators (role `operator`). Passwords are argon2id hashes (argon2-cffi); the
CLI prints a one-time password, to be changed at the first sign-in."""

from __future__ import annotations

import asyncio
import functools
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bhuktani import audit
from bhuktani.clock import now_ms
from bhuktani.store import Database, Row, Tx, UniqueViolation

Role = Literal["merchant", "operator"]
ROLES: tuple[Role, ...] = ("merchant", "operator")
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
MAX_EMAIL_CHARS = 254
# One @, something either side, a dot in the domain, no spaces: a typo's guard, not RFC 5322.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

_hasher = PasswordHasher()


@functools.cache
def _nobody() -> str:
    """Verified against when no user has the address, so that a miss takes a hash's time
    too. Made on first use: a hash costs 64 MiB and tens of milliseconds, which no CLI
    command should pay at import."""
    return _hasher.hash(secrets.token_urlsafe(16))


USER_COLUMNS = "id, email, role, merchant_id, must_change, disabled, password_hash"


class UserError(Exception):
    """A user cannot be made or changed as asked; the message says why, for a person."""


@dataclass(frozen=True)
class User:
    id: int
    email: str
    role: Role
    merchant_id: int | None
    must_change: bool

    @classmethod
    def of(cls, row: Row) -> User:
        role = str(row["role"])
        assert role in ROLES, role
        merchant = row["merchant_id"]
        return cls(
            id=int(row["id"]),
            email=str(row["email"]),
            role="merchant" if role == "merchant" else "operator",
            merchant_id=None if merchant is None else int(merchant),
            must_change=bool(row["must_change"]),
        )


def normal_email(text: str) -> str:
    """An address as stored and compared: trimmed, lower case. Raises UserError."""
    email = text.strip().lower()
    if len(email) > MAX_EMAIL_CHARS or not _EMAIL.match(email):
        raise UserError(f"Not an email address: {text.strip()[:80]!r}")
    return email


def check_new_password(password: str, email: str) -> None:
    """Raises UserError unless the password may be chosen."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise UserError(f"Choose a password of at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise UserError(f"Choose a password of at most {MAX_PASSWORD_CHARS} characters")
    if password.strip().lower() == email.lower():
        raise UserError("Choose a password other than your email address")


async def hash_password(password: str) -> str:
    # argon2 takes tens of milliseconds of CPU by design: off the event loop.
    return await asyncio.to_thread(_hasher.hash, password)


async def _matches(password_hash: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


async def add(
    db: Database, email: str, role: Role, *, merchant_id: int | None, operator: str
) -> tuple[User, str]:
    """A new user and its one-time password (shown once; changed at first sign-in).
    Raises UserError: a bad address, an address taken, a merchant that does not exist."""
    assert role in ROLES, role
    assert (role == "merchant") == (merchant_id is not None), (role, merchant_id)
    address = normal_email(email)
    password = secrets.token_urlsafe(12)
    password_hash = await hash_password(password)

    async def body(tx: Tx) -> User:
        if merchant_id is not None:
            found = await tx.fetchrow(
                "SELECT status FROM merchants WHERE id = $1 AND status <> 'deleted'", merchant_id
            )
            if found is None:
                raise UserError(f"No merchant {merchant_id}")
        row = await tx.fetchrow(
            "INSERT INTO web_users (email, role, merchant_id, password_hash, must_change,"
            f" created_ms) VALUES ($1, $2, $3, $4, TRUE, $5) RETURNING {USER_COLUMNS}",
            address,
            role,
            merchant_id,
            password_hash,
            now_ms(),
        )
        assert row is not None
        await audit.record(
            tx,
            operator=operator,
            action=f"{role}.add_user",
            merchant_id=merchant_id,
            subject=address,
        )
        return User.of(row)

    try:
        user = await db.run(body)
    except UniqueViolation:
        raise UserError(f"A user with the address {address} exists") from None
    return user, password


async def check(db: Database, email: str, password: str) -> User | None:
    """The enabled user this address and password sign in, else None. A miss costs a
    hash's time as a wrong password does."""
    try:
        address = normal_email(email)
    except UserError:
        address = ""
    row = None
    if address and len(password) <= MAX_PASSWORD_CHARS:
        row = await db.read(
            lambda tx: tx.fetchrow(
                f"SELECT {USER_COLUMNS} FROM web_users WHERE email = $1", address
            )
        )
    if row is None:
        await _matches(await asyncio.to_thread(_nobody), password)
        return None
    if not await _matches(str(row["password_hash"]), password) or bool(row["disabled"]):
        return None
    await db.once("UPDATE web_users SET last_login_ms = $2 WHERE id = $1", int(row["id"]), now_ms())
    return User.of(row)


async def change_password(db: Database, user: User, current: str, new: str) -> None:
    """Raises UserError: the current password wrong, the new one not allowed or unchanged."""
    row = await db.read(
        lambda tx: tx.fetchrow("SELECT password_hash FROM web_users WHERE id = $1", user.id)
    )
    if row is None or not await _matches(str(row["password_hash"]), current):
        raise UserError("The current password is wrong")
    check_new_password(new, user.email)
    if new == current:
        raise UserError("Choose a password other than the current one")
    new_hash = await hash_password(new)
    await db.once(
        "UPDATE web_users SET password_hash = $2, must_change = FALSE, password_changed_ms = $3"
        " WHERE id = $1",
        user.id,
        new_hash,
        now_ms(),
    )


async def reset(db: Database, email: str, *, operator: str) -> tuple[User, str]:
    """A new one-time password for a user (a lost password, the demo's users), to be
    changed at the next sign-in; the user's sessions end. Raises UserError."""
    address = normal_email(email)
    password = secrets.token_urlsafe(12)
    password_hash = await hash_password(password)

    async def body(tx: Tx) -> User:
        row = await tx.fetchrow(
            "UPDATE web_users SET password_hash = $2, must_change = TRUE,"
            f" password_changed_ms = $3 WHERE email = $1 RETURNING {USER_COLUMNS}",
            address,
            password_hash,
            now_ms(),
        )
        if row is None:
            raise UserError(f"No user with the address {address}")
        user = User.of(row)
        await tx.execute("DELETE FROM web_sessions WHERE user_id = $1", user.id)
        await audit.record(
            tx,
            operator=operator,
            action=f"{user.role}.reset_password",
            merchant_id=user.merchant_id,
            subject=address,
        )
        return user

    return await db.run(body), password
