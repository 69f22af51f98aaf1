"""Low-balance alerts: a merchant's threshold per environment, and the worker's loop that
sends one signed `balance.low` event each time the available credits drop below it.

Polled every BHUKTANI_LOW_BALANCE_POLL_S, not checked on the payment's path: a commit pays
nothing for it, and a crossing is heard within one poll. `alerted` records that this dip
was told; it clears when the balance is back at or above the threshold (re-armed). Both
changes are conditional UPDATEs, so of two loops (two workers) that see the same crossing
only the one whose UPDATE changed the row queues the event."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from bhuktani import audit, money
from bhuktani.callbacks import outbox
from bhuktani.clock import now_ms
from bhuktani.settings import Settings
from bhuktani.store import Database, Row, Tx

log = structlog.get_logger()

EVENT = "balance.low"
# The loop reads the thresholds this many at a time, in (merchant_id, env) order.
PAGE = 1000


class Gateway(Protocol):
    """What the loop needs of the running system (runtime.Gateway has it)."""

    db: Database
    settings: Settings


@dataclass(frozen=True)
class Told:
    """What one round did: balance.low events queued, thresholds re-armed."""

    alerted: int
    rearmed: int


class UnknownMerchant(LookupError):
    pass


async def set_threshold(
    db: Database, merchant_id: int, env: str, below_paisa: int | None, *, operator: str
) -> None:
    """Set (or, with None, remove) a merchant's threshold for one environment, audited
    "merchant.low_balance". A new threshold starts armed: a merchant already below it
    hears balance.low at the next poll."""
    assert below_paisa is None or below_paisa > 0, below_paisa

    async def body(tx: Tx) -> None:
        if await tx.fetchrow("SELECT id FROM merchants WHERE id = $1", merchant_id) is None:
            raise UnknownMerchant(f"no merchant {merchant_id}")
        previous = await tx.fetchrow(
            "SELECT below_paisa FROM balance_alerts WHERE merchant_id = $1 AND env = $2",
            merchant_id,
            env,
        )
        if below_paisa is None:
            await tx.execute(
                "DELETE FROM balance_alerts WHERE merchant_id = $1 AND env = $2",
                merchant_id,
                env,
            )
        else:
            await tx.execute(
                "INSERT INTO balance_alerts (merchant_id, env, below_paisa, alerted, updated_ms)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (merchant_id, env) DO UPDATE SET"
                " below_paisa = EXCLUDED.below_paisa, alerted = EXCLUDED.alerted,"
                " updated_ms = EXCLUDED.updated_ms",
                merchant_id,
                env,
                below_paisa,
                False,
                now_ms(),
            )
        await audit.record(
            tx,
            operator=operator,
            action="merchant.low_balance",
            merchant_id=merchant_id,
            env=env,
            subject=f"merchant {merchant_id}",
            details={
                "below": None if below_paisa is None else money.format_rupees(below_paisa),
                "previous": None
                if previous is None
                else money.format_rupees(int(previous["below_paisa"])),
            },
        )

    await db.run(body)


async def thresholds(db: Database) -> list[dict[str, Any]]:
    """Every threshold with the merchant's available credits now, for the operator."""
    rows = await db.read(lambda tx: tx.fetch(_WITH_AVAILABLE + " ORDER BY b.merchant_id, b.env"))
    return [
        {
            "merchant_id": int(r["merchant_id"]),
            "env": str(r["env"]),
            "below": money.format_rupees(int(r["below_paisa"])),
            "available": money.format_rupees(_available(r)),
            "alerted": bool(r["alerted"]),
        }
        for r in rows
    ]


# A merchant with no account yet has 0 available.
_WITH_AVAILABLE = (
    "SELECT b.merchant_id, b.env, b.below_paisa, b.alerted,"
    " a.balance_paisa - a.held_paisa AS available_paisa FROM balance_alerts b"
    " LEFT JOIN accounts a ON a.kind = 'merchant' AND a.env = b.env"
    " AND a.merchant_id = b.merchant_id"
)


_PAGE_AFTER = (
    _WITH_AVAILABLE + " WHERE b.merchant_id > $1 OR (b.merchant_id = $1 AND b.env > $2)"
    " ORDER BY b.merchant_id, b.env LIMIT $3"
)


async def _page(tx: Tx, *, after: tuple[int, str]) -> Sequence[Row]:
    return await tx.fetch(_PAGE_AFTER, after[0], after[1], PAGE)


def _available(row: Row) -> int:
    return 0 if row["available_paisa"] is None else int(row["available_paisa"])


async def _alert(tx: Tx, row: Row) -> bool:
    """Mark the dip told and queue its event, unless another loop did first."""
    now = now_ms()
    changed = await tx.execute(
        "UPDATE balance_alerts SET alerted = $3, updated_ms = $4"
        " WHERE merchant_id = $1 AND env = $2 AND alerted = $5 AND below_paisa = $6",
        int(row["merchant_id"]),
        str(row["env"]),
        True,
        now,
        False,
        int(row["below_paisa"]),
    )
    if changed != 1:
        return False
    await outbox.enqueue_event(
        tx,
        int(row["merchant_id"]),
        str(row["env"]),
        EVENT,
        {
            "env": str(row["env"]),
            "credits_available": money.to_rupees(_available(row)),
            "threshold": money.to_rupees(int(row["below_paisa"])),
        },
    )
    return True


async def _rearm(tx: Tx, row: Row) -> bool:
    changed = await tx.execute(
        "UPDATE balance_alerts SET alerted = $3, updated_ms = $4"
        " WHERE merchant_id = $1 AND env = $2 AND alerted = $5",
        int(row["merchant_id"]),
        str(row["env"]),
        False,
        now_ms(),
        True,
    )
    return changed == 1


async def _settle(db: Database, merchant_id: int, env: str) -> tuple[bool, bool]:
    """One threshold whose state looked out of step, read again and set right in one
    transaction: (alerted, re-armed)."""

    async def body(tx: Tx) -> tuple[bool, bool]:
        row = await tx.fetchrow(
            _WITH_AVAILABLE + " WHERE b.merchant_id = $1 AND b.env = $2", merchant_id, env
        )
        if row is None:  # removed meanwhile
            return False, False
        below = _available(row) < int(row["below_paisa"])
        if below and not bool(row["alerted"]):
            return await _alert(tx, row), False
        if not below and bool(row["alerted"]):
            return False, await _rearm(tx, row)
        return False, False

    return await db.run(body)


async def check_once(db: Database) -> Told:
    """One round over every threshold. The scan takes no write lock; only a threshold
    whose state differs from its balance's gets a (short) write transaction."""
    alerted = rearmed = 0
    after: tuple[int, str] = (-1, "")
    while True:
        rows = await db.read(functools.partial(_page, after=after))
        for row in rows:
            below = _available(row) < int(row["below_paisa"])
            if below != bool(row["alerted"]):
                told, cleared = await _settle(db, int(row["merchant_id"]), str(row["env"]))
                alerted += told
                rearmed += cleared
        if len(rows) < PAGE:
            return Told(alerted, rearmed)
        after = (int(rows[-1]["merchant_id"]), str(rows[-1]["env"]))


async def run(gateway: Gateway, stop: asyncio.Event) -> None:
    """The worker's loop: a round every low_balance_poll_s until stop is set."""
    poll_s = gateway.settings.low_balance_poll_s
    while not stop.is_set():
        try:
            told = await check_once(gateway.db)
            if told.alerted or told.rearmed:
                log.info("low_balance_round", alerted=told.alerted, rearmed=told.rearmed)
        except Exception:
            log.exception("low_balance_round_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=poll_s)
