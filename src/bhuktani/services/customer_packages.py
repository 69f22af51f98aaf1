"""One wire shape that several billing systems' documents share: a details call answers the
customer, the current subscription, the due and the packages on offer, each priced under a
`package_id` (a plan for a number of months), and opens a session; the commit pays one
`package_id` of that session at its amount. The documented test users (new, active,
expired) are the same data in every document of this shape.

A group of this shape subclasses CustomerPackagesGroup with its slug, title, ISPs, details
request and examples."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bhuktani import money
from bhuktani.clock import nepal_day, now_ms
from bhuktani.domain import State
from bhuktani.errors import CannotFulfil, field_error
from bhuktani.isps.base import Duration, Package, Shown, Subscriber
from bhuktani.services.base import CommitQuery, CommitView, message_for, require_amount
from bhuktani.services.fields import (
    AmountPaisa,
    LooseCode,
    LooseId,
    Reference,
    WireModel,
    parse,
    reference_present,
)

# The documents' answer for a customer whose first subscription is still unpaid (4000).
FIRST_PAYMENT_AT_OFFICE = (
    "This customer's first subscription payment cannot be paid online."
    " Please contact the nearest office."
)
# What a commit's answer says in `detail`: the documents' words for a success.
PAID_DETAIL = "Payment made successfully. Account will be activated in few minutes"
PENDING_DETAIL = "Payment is being processed."

# The subscriber's own fields (Subscriber.shown) this shape shows: the customer's mobile,
# the due as the ISP writes it ({"amount": "0.00000", "message": ...}), and whether the
# customer is new (the first subscription is paid at an office). A package's `current`
# is its duration's shown field of that name.
MOBILE = "mobile"
DUE = "due"
NEW_CUSTOMER = "new_customer"
CURRENT = "current"

DAYS_PER_MONTH = 30


def offer(
    package_id: str, package_name: str, rupees: int, months: int, *, current: bool
) -> Duration:
    """One entry of a details answer's `packages`: its id is the code a commit sends back."""
    return Duration.in_rupees(
        package_id, package_name, rupees, months * DAYS_PER_MONTH, shown={CURRENT: current}
    )


ACTIVE = Subscriber(
    username="active",
    customer_id="9779869045195",
    full_name="Chandra Mani Neupane",
    current_plan="Fiber Internet (First Installation 20Mbps Home)",
    days_remaining=30,
    has_due=False,
    accept_advance_payment=True,
    packages=(
        Package(
            "Fiber Internet (First Installation)",
            13286,
            (
                offer(
                    "1-13286-5-3",
                    "Fiber Internet (First Installation) - 3 Month(s)",
                    5999,
                    3,
                    current=True,
                ),
                offer(
                    "1-13286-5-12",
                    "Fiber Internet (First Installation) - 12 Month(s)",
                    15500,
                    12,
                    current=False,
                ),
            ),
        ),
    ),
    shown={MOBILE: "9869045195", DUE: {"amount": "0.00000", "message": "Due Amount is NIL"}},
)

EXPIRED = Subscriber(
    username="expired",
    customer_id="9779803074977",
    full_name="koshish bortaula",
    current_plan="NET+TV - 30Mbps",
    days_remaining=0,
    has_due=False,
    accept_advance_payment=True,
    packages=(
        Package(
            "NET+TV - 30Mbps",
            4412,
            (
                offer("1-4412-8-1", "NET+TV - 30Mbps - 1 Month(s)", 1850, 1, current=False),
                offer("1-4412-8-3", "NET+TV - 30Mbps - 3 Month(s)", 5550, 3, current=False),
                offer("1-4412-8-6", "NET+TV - 30Mbps - 6 Month(s)", 9250, 6, current=False),
                offer("1-4412-8-12", "NET+TV - 30Mbps - 12 Month(s)", 18500, 12, current=True),
            ),
        ),
    ),
    shown={MOBILE: "", DUE: {"amount": "0", "message": "Due Amount is NIL"}},
)

# Undocumented but for its refusal: no plan, nothing on offer.
NEW = Subscriber(
    username="new",
    customer_id="9779800000001",
    full_name="New Customer",
    current_plan="",
    days_remaining=0,
    has_due=False,
    accept_advance_payment=False,
    packages=(),
    shown={NEW_CUSTOMER: True},
)

# The active user first: the sandbox's scenario users are derived from it.
SANDBOX_USERS = (ACTIVE, EXPIRED, NEW)


class CommitRequest(WireModel):
    reference: Reference
    session_id: LooseId
    package_id: LooseCode
    amount: AmountPaisa


def _text(shown: Shown, key: str) -> str:
    value = shown.get(key)
    return value if isinstance(value, str) else ""


def _due(subscriber: Subscriber) -> dict[str, str]:
    """The due as the ISP wrote it ("0.00000", "0"): shown, never added to a package's
    amount (the documents: "displayed separately without summing it with the package
    amount"). An ISP that sends the amount as a number has it shown as its text, never
    as no due."""
    due = subscriber.shown.get(DUE)
    written = due if isinstance(due, dict) else {}
    amount = written.get("amount")
    if isinstance(amount, int | float) and not isinstance(amount, bool):
        amount = str(amount)
    return {
        "amount": amount if isinstance(amount, str) and amount else "0",
        "message": _text(written, "message"),
    }


def _end_date(days_remaining: int) -> str:
    """The subscriber's calendar day: Nepal's, not the server's."""
    today = nepal_day(now_ms())
    return (today + timedelta(days=days_remaining)).isoformat()


def _refuse_new_customer(subscriber: Subscriber) -> None:
    if subscriber.shown.get(NEW_CUSTOMER) is True:
        raise CannotFulfil(FIRST_PAYMENT_AT_OFFICE)


class CustomerPackagesGroup:
    uses_sessions = True
    commit_model: type[WireModel] = CommitRequest
    sandbox_subscribers: tuple[Subscriber, ...] = SANDBOX_USERS

    def render_details(self, subscriber: Subscriber, session_id: int | None) -> dict[str, Any]:
        assert session_id is not None
        _refuse_new_customer(subscriber)
        # One status for the customer and the subscription: the plan runs or it has run out.
        status = "Active" if subscriber.days_remaining > 0 else "Expired"
        return {
            "customer": {
                "username": subscriber.customer_id,
                "name": subscriber.full_name,
                "mobile": _text(subscriber.shown, MOBILE),
                "status": status,
            },
            "current_subscription": {
                "package": subscriber.current_plan,
                "end_date": _end_date(subscriber.days_remaining),
                "status": status,
            },
            "due": _due(subscriber),
            "packages": [
                {
                    "package_id": duration.code,
                    "package_name": duration.title,
                    "amount": money.to_rupees_shown(duration.amount_paisa),
                    "current": duration.shown.get(CURRENT) is True,
                }
                for _, duration in subscriber.offers()
            ],
            "session_id": session_id,
            "status": True,
        }

    def parse_commit(self, data: dict[str, Any]) -> CommitQuery:
        reference_present(data)
        request = parse(CommitRequest, data)
        return CommitQuery(
            reference=request.reference,
            amount_paisa=request.amount,
            duration_code=request.package_id,
            session_id=request.session_id,
        )

    def choose(self, subscriber: Subscriber, query: CommitQuery) -> tuple[Package, Duration]:
        # A session is only opened by details, which refuse a new customer; an ISP that
        # offers such a customer packages anyway is still not paid online.
        _refuse_new_customer(subscriber)
        named = [(p, d) for p, d in subscriber.offers() if d.code == query.duration_code]
        if not named:
            raise field_error(
                "package_id", f"Package {query.duration_code!r} is not one the details showed"
            )
        if len(named) > 1:
            raise field_error(
                "package_id", f"Package {query.duration_code!r} names {len(named)} packages"
            )
        package, price = named[0]
        require_amount(query.amount_paisa, price, "the package amount")
        return package, price

    def render_commit(self, view: CommitView) -> dict[str, Any]:
        return {
            "status": True,
            "state": view.state,
            "message": message_for(view.state),
            "extra_data": {},
            "detail": PAID_DETAIL if view.state == State.SUCCESS else PENDING_DETAIL,
            "credits_consumed": money.to_rupees(view.consumed_paisa),
            "credits_available": money.to_rupees(view.available_paisa),
            "id": view.payment_id,
        }
