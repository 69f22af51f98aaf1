"""Deletes the sessions nobody can use any more: expired and never spent by a payment.

A details call writes a session of up to a few hundred KB (the subscriber's packages as
the ISP listed them); kept for ever, they would be most of the database. A spent session
stays: its payment names it. An expired one is kept `session_keep_expired_s` longer, so
that a merchant who comes back late is told "Session expired", not "Invalid session"."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from bhuktani import metrics
from bhuktani.clock import now_ms
from bhuktani.runtime import Gateway
from bhuktani.store import Database

log = structlog.get_logger()

# Rows deleted by one statement, so that one sweep never holds SQLite's write lock (or
# PostgreSQL's row locks) for long; and statements by one sweep, so that it always ends.
BATCH_ROWS = 1000
MAX_BATCHES = 100


async def sweep_once(db: Database, *, keep_expired_s: int) -> int:
    """Delete expired, unspent sessions; returns how many."""
    cutoff_ms = now_ms() - keep_expired_s * 1000
    deleted = 0
    for _ in range(MAX_BATCHES):
        count = await db.run(
            lambda tx: tx.execute(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions"
                " WHERE expires_ms < $1 AND payment_id IS NULL LIMIT $2)",
                cutoff_ms,
                BATCH_ROWS,
            )
        )
        deleted += count
        if count < BATCH_ROWS:
            break
    return deleted


async def run(gateway: Gateway, stop: asyncio.Event) -> None:
    """Until stop is set; a failing sweep is logged and tried again at the next one."""
    settings = gateway.settings
    while not stop.is_set():
        try:
            deleted = await sweep_once(gateway.db, keep_expired_s=settings.session_keep_expired_s)
        except Exception:
            log.exception("session_sweep_failed")
        else:
            metrics.SESSIONS_DELETED.inc(deleted)
            if deleted:
                log.info("sessions_deleted", count=deleted)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.session_sweep_s)
