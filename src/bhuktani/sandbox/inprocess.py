"""The sandbox ISPs for TEST tokens: the catalog's subscribers, kept per merchant in the
gateway's database, answering at once. Scenario users return the outcome their network
fault would give (Unknown), so the whole Processing cycle runs without real timeouts.

Its daily settlement report is every merchant's TEST payments of the ISP on that day: a
real ISP reports every payment the gateway sent it, whichever merchant's it was."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date

from bhuktani.clock import DAY_MS, day_start_ms, now_ms
from bhuktani.isps.base import (
    Applied,
    Lookup,
    NotFound,
    Order,
    Paid,
    PayResult,
    Refused,
    SettlementReport,
    StatusResult,
    Subscriber,
    Unknown,
    username_key,
)
from bhuktani.sandbox import catalog
from bhuktani.sandbox.catalog import Behaviour
from bhuktani.store import Database, Row, Tx, query_row


def new_receipt() -> str:
    return str(1000 + secrets.randbelow(9_000_000))


def _refused(subscriber: Subscriber, order: Order) -> Refused | None:
    reason = catalog.refusal(subscriber, order)
    return None if reason is None else Refused(*reason)


# $1 payment, $2 merchant, $3 isp, $4 username, $5 amount, $6 receipt, $7 visible from,
# $8 now, $9 plan, $10 days if new, $11 days added, $12 the one-time offer's code and a
# newline ('' for a plan). The payment is written first: its key says whether it was
# applied before; then the subscriber's plan, days and paid offers, added in the statement
# so that two payments for one subscriber at once both count.
_INSERT_PAYMENT = (
    "INSERT INTO sandbox_payments (payment_id, merchant_id, isp, username, amount_paisa,"
    " receipt, visible_ms, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    " ON CONFLICT (payment_id) DO NOTHING RETURNING receipt"
)
_UPSERT_SUBSCRIBER = (
    "INSERT INTO sandbox_subscribers"
    " (merchant_id, isp, username, current_plan, days_remaining, paid)"
    " {source} ON CONFLICT (merchant_id, isp, username) DO UPDATE SET"
    " current_plan = EXCLUDED.current_plan,"
    " days_remaining = sandbox_subscribers.days_remaining + $11,"
    " paid = sandbox_subscribers.paid || $12"
)
_UPSERT_SUBSCRIBER_VALUES = _UPSERT_SUBSCRIBER.format(source="VALUES ($2, $3, $4, $9, $10, $12)")
# PostgreSQL: both in one statement, one round trip.
_APPLY_IN_ONE_STATEMENT = (
    f"WITH applied AS ({_INSERT_PAYMENT}), subscriber AS ("
    + _UPSERT_SUBSCRIBER.format(
        source="SELECT $2, $3, $4, $9, $10::integer, $12::text FROM applied"
    )
    + ") SELECT receipt FROM applied"
)


async def _apply_in(tx: Tx, values: tuple[object, ...]) -> Row | None:
    row = await tx.fetchrow(_INSERT_PAYMENT, *values[:8])
    if row is not None:
        await tx.execute(_UPSERT_SUBSCRIBER_VALUES, *values)
    return row


# A one-time offer is marked paid only where it is not yet: the update's condition is
# checked on the row as it is once any other payment's write is done (PostgreSQL waits on
# the row; SQLite writes one at a time), so two payments of one bill at once cannot both
# pass; the one that finds it paid is undone. $13 is a newline, $14 the code between
# newlines.
_NOT_PAID_YET = {
    "postgresql": " WHERE strpos($13::text || sandbox_subscribers.paid, $14::text) = 0",
    "sqlite": " WHERE instr($13 || sandbox_subscribers.paid, $14) = 0",
}
_APPLY_ONCE_IN_ONE_STATEMENT = (
    f"WITH applied AS ({_INSERT_PAYMENT}), subscriber AS ("
    + _UPSERT_SUBSCRIBER.format(
        source="SELECT $2, $3, $4, $9, $10::integer, $12::text FROM applied"
    )
    + _NOT_PAID_YET["postgresql"]
    + " RETURNING paid) SELECT receipt, (SELECT count(*) FROM subscriber) AS marked"
    " FROM applied"
)
_MARK_PAID_ONCE = _UPSERT_SUBSCRIBER_VALUES + _NOT_PAID_YET["sqlite"] + " RETURNING paid"


class _PaidBefore(Exception):
    """The one-time offer was paid by another payment: this one is undone."""


async def _apply_once_in(tx: Tx, dialect: str, values: tuple[object, ...]) -> Row | None:
    args = (*values, "\n", "\n" + str(values[11]))
    if dialect == "postgresql":
        row = await tx.fetchrow(_APPLY_ONCE_IN_ONE_STATEMENT, *args)
        if row is not None and int(row["marked"]) == 0:
            raise _PaidBefore
        return row
    row = await tx.fetchrow(_INSERT_PAYMENT, *values[:8])
    if row is not None and await tx.fetchrow(_MARK_PAID_ONCE, *args) is None:
        raise _PaidBefore
    return row


async def reset(db: Database, merchant_id: int) -> None:
    """The merchant's sandbox subscribers as their documents show them again: plans and
    days as first seen, bills and dues unpaid. Its payments and its money are untouched."""
    await db.run(
        lambda tx: tx.execute("DELETE FROM sandbox_subscribers WHERE merchant_id = $1", merchant_id)
    )


class SandboxProvider:
    def __init__(self, db: Database, *, slow_delay_s: float, settle_window_s: float) -> None:
        self._db = db
        self._slow_delay_ms = int(slow_delay_s * 1000)
        self.settle_window_s = settle_window_s
        self.lookup_in: Callable[[Tx, Lookup], Awaitable[Subscriber | None]] | None = (
            self._lookup_in
        )

    async def _current(
        self, tx: Tx, merchant_id: int, isp: str, username: str
    ) -> Subscriber | None:
        base = catalog.template(isp, username)
        if base is None:
            return None
        row = await tx.fetchrow(
            "SELECT current_plan, days_remaining, paid FROM sandbox_subscribers"
            " WHERE merchant_id = $1 AND isp = $2 AND username = $3",
            merchant_id,
            isp,
            username_key(username),
        )
        if row is None:
            return base
        return replace(
            base,
            current_plan=str(row["current_plan"]),
            days_remaining=int(row["days_remaining"]),
            paid=tuple(str(row["paid"]).split("\n")[:-1]),
        )

    @property
    def waiting(self) -> int:
        return 0  # no connections: the sandbox answers from the gateway's database

    async def aclose(self) -> None:
        pass

    async def lookup(self, query: Lookup) -> Subscriber | None:
        return await self._db.read(lambda tx: self._lookup_in(tx, query))

    async def _lookup_in(self, tx: Tx, query: Lookup) -> Subscriber | None:
        """The look-up inside a transaction of the gateway's own: the sandbox's state lives
        in the gateway's database."""
        return await self._current(tx, query.merchant_id, query.isp, query.username)

    async def _apply(self, order: Order, visible_ms: int) -> PayResult:
        """Apply the payment once per payment_id, as an idempotent ISP does: a payment
        applied before answers with its first receipt and changes nothing."""
        # The ISP prices from its catalog: what a subscriber paid changes their plan and
        # days, never the prices, so whether it refuses needs no read, but for a one-time
        # offer (a bill), which must not have been paid before.
        template = catalog.template(order.isp, order.username)
        once = None if template is None else catalog.once_code(template, order)
        if once is not None:
            current = await self._db.read(
                lambda tx: self._current(tx, order.merchant_id, order.isp, order.username)
            )
            template = current
        refused = (
            Refused("Username not found", "username")
            if template is None
            else _refused(template, order)
        )
        if refused is not None:
            # Whatever the order looks like now, a payment applied earlier stays so.
            earlier = await self._db.read(lambda tx: self._receipt(tx, order.payment_id))
            return refused if earlier is None else Paid(earlier)
        assert template is not None
        values = (
            order.payment_id,
            order.merchant_id,
            order.isp,
            username_key(order.username),
            order.amount_paisa,
            new_receipt(),
            visible_ms,
            now_ms(),
            order.package_title,
            # The days of a subscriber paying for the first time; else the days are added.
            template.days_remaining + order.days,
            order.days,
            "" if once is None else f"{once}\n",
        )
        if values[11]:
            dialect = self._db.dialect
            try:
                row = await self._db.run(lambda tx: _apply_once_in(tx, dialect, values))
            except _PaidBefore:
                return Refused(catalog.PAID_BEFORE)
        elif self._db.dialect == "postgresql":
            row = await self._db.once(_APPLY_IN_ONE_STATEMENT, *values)
        else:
            row = await self._db.run(lambda tx: _apply_in(tx, values))
        if row is not None:
            return Paid(str(row["receipt"]))
        # Applied before: the ISP answers as it did then.
        earlier = await self._db.read(lambda tx: self._receipt(tx, order.payment_id))
        assert earlier is not None, order.payment_id
        return Paid(earlier)

    @staticmethod
    async def _receipt(tx: Tx, payment_id: int) -> str | None:
        row = await tx.fetchrow(
            "SELECT receipt FROM sandbox_payments WHERE payment_id = $1", payment_id
        )
        return None if row is None else str(row["receipt"])

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

    async def settlement(self, isp: str, day: date) -> SettlementReport:
        """The payments of the ISP the sandbox applied on the day (Nepal time), for every
        merchant: a payment is applied when it is written (a slow one only shows later)."""
        start_ms = day_start_ms(day)
        rows = await self._db.read(
            lambda tx: tx.fetch(
                "SELECT payment_id, amount_paisa, receipt, created_ms FROM sandbox_payments"
                " WHERE isp = $1 AND created_ms >= $2 AND created_ms < $3"
                " ORDER BY created_ms, payment_id",
                isp,
                start_ms,
                start_ms + DAY_MS,
            )
        )
        return SettlementReport(
            isp,
            day,
            tuple(
                Applied(
                    int(row["payment_id"]),
                    int(row["amount_paisa"]),
                    str(row["receipt"]),
                    int(row["created_ms"]),
                )
                for row in rows
            ),
        )
