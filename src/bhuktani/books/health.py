"""What waits for an operator, as gauges on /metrics: flagged payments, the reconciler's
backlog, callbacks pending, late or given up, merchants below their low-balance threshold.

Read from the database, not counted where they happen: the loops that change them may run
in `bhuktani worker`, which serves no /metrics, and a count of a table is right after any
restart. Every process that serves /metrics reads them every PUBLISH_EVERY_S, off the
scrape's path (a scrape asks the database nothing); each query is a count over an index
or a small table. The same loop keeps this process's own gauges (breakers, waiting
queues) current every metrics.PUBLISH_EVERY_S, so that with several workers each one's
state shows, not only that of the worker a scrape reaches."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from bhuktani import metrics
from bhuktani.clock import now_ms
from bhuktani.domain import Env
from bhuktani.store import Database, Row, Tx

log = structlog.get_logger()

PUBLISH_EVERY_S = 15.0
# A Processing payment whose status question is this late counts in the backlog: the
# reconciler polls every second, so a minute means it is stopped or cannot keep up.
OVERDUE_AFTER_MS = 60_000
# A pending callback this late: the deliverer is stopped or cannot keep up.
CALLBACK_OVERDUE_AFTER_MS = 5 * 60_000


class Gateway(Protocol):
    """What the loop needs of the running system (runtime.Gateway has it)."""

    db: Database

    @property
    def breakers(self) -> Breakers: ...

    def isp_waiting(self) -> dict[str, int]: ...


class Breakers(Protocol):
    def degraded(self) -> dict[str, tuple[bool, int]]: ...


@dataclass(frozen=True)
class Queues:
    """One reading of what waits for an operator."""

    flagged: dict[str, int]
    reconcile_overdue: int
    callbacks: dict[str, int]
    balances_low: dict[str, int]


async def read(db: Database, at_ms: int) -> Queues:
    async def body(tx: Tx) -> Queues:
        flagged = await tx.fetch(
            "SELECT env, count(*) AS n FROM payments"
            " WHERE state IN ('Processing', 'Queued') AND flagged GROUP BY env"
        )
        overdue = await tx.fetchrow(
            "SELECT count(*) AS n FROM payments WHERE state = 'Processing'"
            " AND next_check_ms <= $1 AND lease_until_ms <= $2",
            at_ms - OVERDUE_AFTER_MS,
            at_ms,
        )
        callbacks = await tx.fetch(
            "SELECT status, count(*) AS n FROM callbacks"
            " WHERE status IN ('pending', 'expired') GROUP BY status"
        )
        late = await tx.fetchrow(
            "SELECT count(*) AS n FROM callbacks WHERE status = 'pending'"
            " AND next_attempt_ms <= $1",
            at_ms - CALLBACK_OVERDUE_AFTER_MS,
        )
        low = await tx.fetch(
            "SELECT env, count(*) AS n FROM balance_alerts WHERE alerted GROUP BY env"
        )
        by_status = {"pending": 0, "expired": 0} | {
            str(r["status"]): int(r["n"]) for r in callbacks
        }
        by_status["overdue"] = int(late["n"]) if late else 0
        return Queues(
            flagged=_by_env(flagged),
            reconcile_overdue=int(overdue["n"]) if overdue else 0,
            callbacks=by_status,
            balances_low=_by_env(low),
        )

    return await db.read(body)


def _by_env(rows: Sequence[Row]) -> dict[str, int]:
    counts = {env.value: 0 for env in Env}
    for row in rows:
        counts[str(row["env"])] = int(row["n"])
    return counts


def show(queues: Queues) -> None:
    for env, n in queues.flagged.items():
        metrics.FLAGGED.labels(env=env).set(n)
    metrics.RECONCILE_OVERDUE.set(queues.reconcile_overdue)
    for status, n in queues.callbacks.items():
        metrics.CALLBACKS.labels(status=status).set(n)
    for env, n in queues.balances_low.items():
        metrics.BALANCES_LOW.labels(env=env).set(n)


async def publish(db: Database) -> None:
    """Read the queues into their gauges. A failed read is logged, shown as the database
    down, and leaves the other gauges as they were: the metric never stops a process."""
    try:
        queues = await read(db, now_ms())
    except Exception:
        log.exception("health_publish_failed")
        metrics.DATABASE_UP.set(0)
        return
    metrics.DATABASE_UP.set(1)
    show(queues)


async def watch(
    gateway: Gateway,
    stop: asyncio.Event,
    every_s: float = PUBLISH_EVERY_S,
    own_every_s: float = metrics.PUBLISH_EVERY_S,
) -> None:
    """Until stop is set: this process's own gauges every `own_every_s`, the database's
    every `every_s` (and at once; never when it is 0)."""
    due = 0.0
    while not stop.is_set():
        metrics.publish(gateway.breakers.degraded(), gateway.db.waiting(), gateway.isp_waiting())
        if every_s > 0 and time.monotonic() >= due:
            due = time.monotonic() + every_s
            await publish(gateway.db)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=own_every_s)
