"""Expired sessions that no payment spent are deleted by the worker; the others stay."""

from __future__ import annotations

import asyncio
import time

from bhuktani.clock import now_ms
from bhuktani.payments import sweeper
from bhuktani.store import Database
from tests.api.test_sessions import app_client, session_of
from tests.support import new_merchant


async def _sessions_of(db: Database, merchant_id: int) -> set[int]:
    rows = await db.read(
        lambda tx: tx.fetch("SELECT id FROM sessions WHERE merchant_id = $1", merchant_id)
    )
    return {int(row["id"]) for row in rows}


async def expire(db: Database, session_id: int, expires_ms: int) -> None:
    await db.run(
        lambda tx: tx.execute(
            "UPDATE sessions SET expires_ms = $2 WHERE id = $1", session_id, expires_ms
        )
    )


async def test_the_running_worker_deletes_expired_unspent_sessions(db_url: str) -> None:
    async with app_client(
        db_url, session_ttl_s=1, session_keep_expired_s=0, session_sweep_s=0.1
    ) as client:
        merchant = await new_merchant(client.gateway.db)
        made = {await session_of(client, merchant.test_token) for _ in range(20)}
        assert made <= await _sessions_of(client.gateway.db, merchant.merchant_id)
        deadline = time.monotonic() + 5
        while await _sessions_of(client.gateway.db, merchant.merchant_id):
            assert time.monotonic() < deadline, "expired sessions were never deleted"
            await asyncio.sleep(0.1)


async def test_a_sweep_keeps_sessions_in_force_spent_ones_and_the_recently_expired(
    db_url: str,
) -> None:
    # No sweeper running: this test calls it itself.
    async with app_client(db_url, reconciler_enabled=False) as client:
        db = client.gateway.db
        merchant = await new_merchant(db)
        in_force, spent, recent, old = [
            await session_of(client, merchant.test_token) for _ in "abcd"
        ]
        now = now_ms()

        two_hours_ago, a_minute_ago = now - 2 * 3600_000, now - 60_000
        for session_id, expires_ms in ((old, two_hours_ago), (recent, a_minute_ago)):
            await expire(db, session_id, expires_ms)
        await expire(db, spent, two_hours_ago)
        await db.run(
            lambda tx: tx.execute("UPDATE sessions SET payment_id = 1 WHERE id = $1", spent)
        )
        assert await sweeper.sweep_once(db, keep_expired_s=3600) == 1
        assert await _sessions_of(db, merchant.merchant_id) == {in_force, spent, recent}
        assert await sweeper.sweep_once(db, keep_expired_s=0) == 1
        assert await _sessions_of(db, merchant.merchant_id) == {in_force, spent}
