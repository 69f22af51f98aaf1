"""The sandbox ISPs for TEST tokens: the catalog's subscribers, kept per merchant in the
gateway's database, answering at once. Scenario users return the outcome their network
fault would give (Unknown), so the whole Processing cycle runs without real timeouts."""

from __future__ import annotations

import secrets
from dataclasses import replace

from bhuktani.clock import now_ms
from bhuktani.providers.base import (
    Lookup,
    NotFound,
    Order,
    Paid,
    PayResult,
    Refused,
    StatusResult,
    Subscriber,
    Unknown,
)
from bhuktani.sandbox import catalog
from bhuktani.sandbox.catalog import Behaviour
from bhuktani.store import Database, Tx, UniqueViolation, query_row


def new_receipt() -> str:
    return str(1000 + secrets.randbelow(9_000_000))


class SandboxProvider:
    def __init__(self, db: Database, *, slow_delay_s: float, settle_window_s: float) -> None:
        self._db = db
        self._slow_delay_ms = int(slow_delay_s * 1000)
        self.settle_window_s = settle_window_s

    async def _current(
        self, tx: Tx, merchant_id: int, isp: str, username: str
    ) -> Subscriber | None:
        base = catalog.template(isp, username)
        if base is None:
            return None
        row = await tx.fetchrow(
            "SELECT current_plan, days_remaining FROM sandbox_subscribers"
            " WHERE merchant_id = $1 AND isp = $2 AND username = $3",
            merchant_id,
            isp,
            catalog.normalise(username),
        )
        if row is None:
            return base
        return replace(
            base,
            current_plan=str(row["current_plan"]),
            days_remaining=int(row["days_remaining"]),
        )

    async def lookup(self, query: Lookup) -> Subscriber | None:
        return await self._db.read(lambda tx: self.lookup_in(tx, query))

    async def lookup_in(self, tx: Tx, query: Lookup) -> Subscriber | None:
        """The look-up inside a transaction of the gateway's own: the sandbox's state lives
        in the gateway's database."""
        return await self._current(tx, query.merchant_id, query.isp, query.username)

    async def _apply(self, order: Order, visible_ms: int) -> PayResult:
        """Apply the payment once per payment_id, as an idempotent ISP does."""
        try:

            async def _tx(tx: Tx) -> PayResult:
                existing = await tx.fetchrow(
                    "SELECT receipt FROM sandbox_payments WHERE payment_id = $1",
                    order.payment_id,
                )
                if existing is not None:
                    return Paid(str(existing["receipt"]))
                subscriber = await self._current(tx, order.merchant_id, order.isp, order.username)
                if subscriber is None:
                    return Refused("Username not found", "username")
                refused = catalog.refusal(subscriber, order)
                if refused is not None:
                    return Refused(*refused)
                updated = catalog.after_payment(subscriber, order)
                await tx.execute(
                    "INSERT INTO sandbox_subscribers (merchant_id, isp, username, current_plan,"
                    " days_remaining) VALUES ($1, $2, $3, $4, $5)"
                    " ON CONFLICT (merchant_id, isp, username) DO UPDATE SET"
                    " current_plan = EXCLUDED.current_plan,"
                    " days_remaining = EXCLUDED.days_remaining",
                    order.merchant_id,
                    order.isp,
                    catalog.normalise(order.username),
                    updated.current_plan,
                    updated.days_remaining,
                )
                receipt = new_receipt()
                await tx.execute(
                    "INSERT INTO sandbox_payments (payment_id, merchant_id, isp, username,"
                    " amount_paisa, receipt, visible_ms, created_ms)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    order.payment_id,
                    order.merchant_id,
                    order.isp,
                    catalog.normalise(order.username),
                    order.amount_paisa,
                    receipt,
                    visible_ms,
                    now_ms(),
                )
                return Paid(receipt)

            return await self._db.run(_tx)
        except UniqueViolation:
            # The same payment applied concurrently: the ISP keeps the first.
            return await self._apply(order, visible_ms)

    async def pay(self, order: Order) -> PayResult:
        behaviour = catalog.behaviour(order.username)
        if behaviour is Behaviour.LOST:
            return Unknown("connection lost before the ISP received the payment")
        if behaviour is Behaviour.SLOW:
            result = await self._apply(order, now_ms() + self._slow_delay_ms)
            return Unknown("the ISP did not answer in time") if isinstance(result, Paid) else result
        result = await self._apply(order, now_ms())
        if behaviour is Behaviour.FLAKY and isinstance(result, Paid):
            return Unknown("connection dropped after the ISP received the payment")
        return result

    async def status(self, order: Order) -> StatusResult:
        row = await query_row(
            self._db,
            "SELECT receipt, visible_ms FROM sandbox_payments WHERE payment_id = $1",
            order.payment_id,
        )
        if row is None:
            return NotFound()
        if int(row["visible_ms"]) > now_ms():
            return Unknown("the ISP is still processing the payment")
        return Paid(str(row["receipt"]))
