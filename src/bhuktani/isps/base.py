"""What every provider (one ISP billing protocol) offers the flows, and what it returns.

A payment is pending by default: only an explicit answer from the ISP is final.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from bhuktani.store import Tx

# A group's own fields, as its document shows them (a bill's VAT, an STB, a zone): JSON
# values the generic model has no place for, carried by the ISP protocol and rendered by
# the group alone.
Shown = dict[str, Any]


@dataclass(frozen=True)
class Duration:
    """One price a subscriber can pay: a plan for a time, a bill, a due."""

    code: str
    title: str
    amount_paisa: int
    days: int
    # Paid once, then gone: a bill or a due. The ISP refuses it a second time and the
    # subscriber's `paid` lists its code.
    once: bool = False
    shown: Shown = field(default_factory=dict, hash=False)
    # Set where the payer chooses the amount (a single-step service's deposit): any amount
    # from amount_paisa up to this one is the price.
    max_amount_paisa: int | None = None

    def accepts(self, amount_paisa: int) -> bool:
        """Whether a payment of this amount pays this price."""
        if self.max_amount_paisa is None:
            return amount_paisa == self.amount_paisa
        return self.amount_paisa <= amount_paisa <= self.max_amount_paisa

    @classmethod
    def in_rupees(
        cls,
        code: str,
        title: str,
        rupees: int,
        days: int,
        *,
        once: bool = False,
        shown: Shown | None = None,
    ) -> Duration:
        """A price written as the documents write it, in whole rupees."""
        return cls(code, title, rupees * 100, days, once, dict(shown or {}))


@dataclass(frozen=True)
class Package:
    title: str
    code: int
    durations: tuple[Duration, ...]


@dataclass(frozen=True)
class Subscriber:
    username: str
    customer_id: str
    full_name: str
    current_plan: str
    days_remaining: int
    has_due: bool
    accept_advance_payment: bool
    packages: tuple[Package, ...]
    shown: Shown = field(default_factory=dict, hash=False)
    # The codes of the one-time offers (Duration.once) this subscriber has paid.
    paid: tuple[str, ...] = ()

    def current_package(self) -> Package | None:
        return next((p for p in self.packages if p.title == self.current_plan), None)

    def offers(self) -> tuple[tuple[Package, Duration], ...]:
        """Every price this subscriber can pay now: one-time offers already paid left out."""
        return tuple(
            (package, duration)
            for package in self.packages
            for duration in package.durations
            if not (duration.once and duration.code in self.paid)
        )


def username_key(username: str) -> str:
    """A subscriber's username as ISPs compare them: without surrounding space, any case."""
    return username.strip().lower()


@dataclass(frozen=True)
class Lookup:
    isp: str
    username: str
    # The sandbox keeps one copy of its subscribers per merchant; live ISPs ignore it.
    merchant_id: int


@dataclass(frozen=True)
class Order:
    """A payment as the ISP sees it; payment_id is the ISP-side idempotency key."""

    payment_id: int
    merchant_id: int
    isp: str
    username: str
    package_code: int | None
    package_title: str
    duration_code: str
    days: int
    amount_paisa: int


@dataclass(frozen=True)
class Paid:
    receipt: str


@dataclass(frozen=True)
class Refused:
    reason: str
    # Set when the ISP refused one field of the request (1011 rather than 1021).
    field: str | None = None


@dataclass(frozen=True)
class Unknown:
    reason: str
    # The ISP answered, but not in a way that can be read: unlike a timeout, waiting does
    # not cure it, so the reconciler flags a payment that keeps getting such answers.
    unreadable: bool = False


@dataclass(frozen=True)
class NotFound:
    pass


PayResult = Paid | Refused | Unknown
StatusResult = Paid | Refused | NotFound | Unknown


@dataclass(frozen=True)
class Applied:
    """One payment an ISP applied, as its daily report lists it."""

    payment_id: int  # our payment id: the ISP's idempotency key
    amount_paisa: int
    receipt: str
    applied_ms: int


@dataclass(frozen=True)
class SettlementReport:
    """The payments an ISP applied on one day (Nepal time), each once."""

    isp: str
    day: date
    payments: tuple[Applied, ...]

    @property
    def total_paisa(self) -> int:
        return sum(p.amount_paisa for p in self.payments)


class ProviderUnavailable(Exception):
    """The ISP could not answer a look-up (nothing was charged) or a settlement report."""


class ReportUnreadable(Exception):
    """The ISP answered its settlement report with something that is not one: never
    compared with our books, since a wrong report would raise or hide mismatches."""


class Provider(Protocol):
    # How long after a payment was sent a NotFound from this ISP can be trusted as final.
    settle_window_s: float
    # A provider whose subscribers live in the gateway's own database (the sandbox) can
    # look one up inside a transaction of the gateway's: then a details call's look-up and
    # its session are one transaction. None for an ISP across the network.
    lookup_in: Callable[[Tx, Lookup], Awaitable[Subscriber | None]] | None

    async def lookup(self, query: Lookup) -> Subscriber | None: ...

    async def pay(self, order: Order) -> PayResult: ...

    async def status(self, order: Order) -> StatusResult: ...

    async def settlement(self, isp: str, day: date) -> SettlementReport:
        """What the ISP applied on that day; raises ProviderUnavailable when it does not
        answer, ReportUnreadable when its answer is not a report."""
        ...

    @property
    def waiting(self) -> int:
        """Calls waiting for a connection to the ISP now."""
        ...

    async def aclose(self) -> None: ...
