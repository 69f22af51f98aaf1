"""The pages' users and sessions, on both databases: hashes, one-time passwords, the
failure window, expiry, and a disabled user."""

from __future__ import annotations

import pytest

from bhuktani.clock import now_ms
from bhuktani.store import Database
from bhuktani.web import sessions, users
from tests.support import new_merchant

ONE = 60


async def test_a_password_is_stored_as_an_argon2id_hash_and_checked(db: Database) -> None:
    merchant = await new_merchant(db)
    email = f"u{now_ms()}@example.com"
    user, password = await users.add(
        db, email.upper(), "merchant", merchant_id=merchant.merchant_id, operator="t"
    )
    assert user.email == email and user.must_change
    row = await db.read(
        lambda tx: tx.fetchrow("SELECT password_hash FROM web_users WHERE id = $1", user.id)
    )
    assert row is not None and str(row["password_hash"]).startswith("$argon2id$")
    assert password not in str(row["password_hash"])
    assert await users.check(db, email, password) == user
    assert await users.check(db, email, password + "x") is None
    assert await users.check(db, "nobody@example.com", password) is None
    assert await users.check(db, "not an address", password) is None


async def test_a_new_password_must_be_long_differ_and_come_with_the_current_one(
    db: Database,
) -> None:
    email = f"op{now_ms()}@example.com"
    user, password = await users.add(db, email, "operator", merchant_id=None, operator="t")
    for current, new, says in (
        ("wrong", "a long enough password", "current password is wrong"),
        (password, "short", "at least 12"),
        (password, email, "other than your email"),
        (password, password, "other than the current"),
    ):
        with pytest.raises(users.UserError, match=says):
            await users.change_password(db, user, current, new)
    await users.change_password(db, user, password, "a long enough password")
    changed = await users.check(db, email, "a long enough password")
    assert changed is not None and not changed.must_change


async def test_users_are_refused_for_unknown_merchants_and_taken_addresses(db: Database) -> None:
    with pytest.raises(users.UserError, match="No merchant"):
        await users.add(db, "x@example.com", "merchant", merchant_id=10**9, operator="t")
    email = f"twice{now_ms()}@example.com"
    await users.add(db, email, "operator", merchant_id=None, operator="t")
    with pytest.raises(users.UserError, match="exists"):
        await users.add(db, email, "operator", merchant_id=None, operator="t")
    with pytest.raises(users.UserError, match="Not an email"):
        await users.add(db, "no-at-sign", "operator", merchant_id=None, operator="t")


async def test_a_session_ends_when_it_expires_or_its_user_is_disabled(db: Database) -> None:
    user, _ = await users.add(
        db, f"s{now_ms()}@example.com", "operator", merchant_id=None, operator="t"
    )
    token = await sessions.start(db, user, ttl_s=3600)
    found = await sessions.current(db, token)
    assert found is not None and found.user == user
    assert found.csrf_ok(found.csrf_token) and not found.csrf_ok("forged")
    assert await sessions.current(db, token + "x") is None
    await db.once("UPDATE web_users SET disabled = TRUE WHERE id = $1", user.id)
    assert await sessions.current(db, token) is None
    await db.once("UPDATE web_users SET disabled = FALSE WHERE id = $1", user.id)
    await db.once("UPDATE web_sessions SET expires_ms = $2 WHERE user_id = $1", user.id, now_ms())
    assert await sessions.current(db, token) is None
    await sessions.sweep(db)
    assert (
        await db.read(
            lambda tx: tx.fetchrow("SELECT 1 AS x FROM web_sessions WHERE user_id = $1", user.id)
        )
        is None
    )


async def test_failures_are_counted_per_key_and_forgotten_after_the_window(db: Database) -> None:
    key = (f"email:w{now_ms()}@example.com", f"client:10.0.0.{now_ms() % 200}")
    limits = ((key[0], 3), (key[1], 10))
    for _ in range(3):
        assert await sessions.refused_for_s(db, limits, window_s=ONE) == 0
        await sessions.failed(db, key, window_s=ONE)
    wait_s = await sessions.refused_for_s(db, limits, window_s=ONE)
    assert 0 < wait_s <= ONE
    # The window over, a failure starts a new one at 1.
    await db.once(
        "UPDATE login_failures SET window_start_ms = window_start_ms - $2 WHERE key = $1",
        key[0],
        (ONE + 1) * 1000,
    )
    assert await sessions.refused_for_s(db, limits, window_s=ONE) == 0
    await sessions.failed(db, key, window_s=ONE)
    row = await db.read(
        lambda tx: tx.fetchrow("SELECT failures FROM login_failures WHERE key = $1", key[0])
    )
    assert row is not None and int(row["failures"]) == 1
    # The client's count went on: 4 of its 10.
    row = await db.read(
        lambda tx: tx.fetchrow("SELECT failures FROM login_failures WHERE key = $1", key[1])
    )
    assert row is not None and int(row["failures"]) == 4
    await sessions.succeeded(db, key[0])
    assert await sessions.refused_for_s(db, ((key[0], 1),), window_s=ONE) == 0
