"""Arrownet: request models and response shapes of seeds/arrownet.md. No sessions: a
commit names the subscriber and is priced from the ISP's current answer."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from bhuktani import money
from bhuktani.domain import State
from bhuktani.errors import field_error
from bhuktani.isps.base import Duration, Package, Subscriber
from bhuktani.services.base import (
    CommitQuery,
    CommitView,
    DetailsQuery,
    Examples,
    current_plan_price,
    message_for,
)
from bhuktani.services.fields import (
    AmountPaisa,
    Reference,
    Username,
    WireModel,
    loose_int,
    parse,
    reference_present,
)

SLUG = "arrownet"
DURATIONS_MONTHS = (1, 3, 6, 12)


PACKAGES = (
    Package(
        "50Mbps",
        1,
        (
            Duration.in_rupees("1", "1 Month", 1695, 30),
            Duration.in_rupees("3", "3 Months", 5085, 90),
            Duration.in_rupees("6", "6 Months", 9492, 180),
            Duration.in_rupees("12", "12 Months", 17628, 360),
        ),
    ),
)

# The document's test subscriber.
SANDBOX_USER = Subscriber(
    username="Pradhanang",
    customer_id="1001",
    full_name="Ashish Pradhanang - Home",
    current_plan="50Mbps",
    days_remaining=464,
    has_due=False,
    accept_advance_payment=True,
    packages=PACKAGES,
)
Months = Annotated[int, BeforeValidator(loose_int), Field(strict=True)]


class DetailsRequest(WireModel):
    username: Username
    reference: Reference | None = None


class CommitRequest(WireModel):
    reference: Reference
    username: Username
    amount: AmountPaisa
    duration: Months


class Arrownet:
    slug = SLUG
    title = "Arrownet"
    isps = (SLUG,)
    uses_sessions = False
    details_model: type[WireModel] = DetailsRequest
    commit_model: type[WireModel] = CommitRequest
    sandbox_subscribers = (SANDBOX_USER,)
    examples = Examples(
        details={"username": "Pradhanang"},
        commit={"username": "Pradhanang", "amount": "1695.00", "duration": 1},
    )

    def parse_details(self, data: dict[str, Any]) -> DetailsQuery:
        request = parse(DetailsRequest, data)
        return DetailsQuery(isp=SLUG, username=request.username, reference=request.reference)

    def render_details(self, subscriber: Subscriber, session_id: int | None) -> dict[str, Any]:
        current = subscriber.current_package()
        return {
            "status": True,
            "plan_details": [
                {"duration": int(d.code), "amount": money.format_rupees(d.amount_paisa)}
                for d in (current.durations if current else ())
                if d.code.isdigit()
            ],
            "days_remaining": subscriber.days_remaining,
            "current_plan": subscriber.current_plan,
            "accept_advance_payment": subscriber.accept_advance_payment,
            "has_due": subscriber.has_due,
            "full_name": subscriber.full_name,
        }

    def parse_commit(self, data: dict[str, Any]) -> CommitQuery:
        reference_present(data)
        request = parse(CommitRequest, data)
        if request.duration not in DURATIONS_MONTHS:
            raise field_error("duration", "Duration must be one of 1, 3, 6 or 12 months")
        return CommitQuery(
            reference=request.reference,
            amount_paisa=request.amount,
            duration_code=str(request.duration),
            isp=SLUG,
            username=request.username,
        )

    def choose(self, subscriber: Subscriber, query: CommitQuery) -> tuple[Package, Duration]:
        return current_plan_price(
            subscriber,
            query,
            duration_field="duration",
            no_price=f"No {query.duration_code}-month price for this plan",
        )

    def render_commit(self, view: CommitView) -> dict[str, Any]:
        return {
            "status": True,
            "message": message_for(view.state),
            "detail": "Transaction successful"
            if view.state == State.SUCCESS
            else "Transaction pending",
            "extra_data": {},
            "state": view.state,
            "id": view.payment_id,
            "credits_consumed": money.to_rupees(view.consumed_paisa),
            "credits_available": money.to_rupees(view.available_paisa),
        }


GROUP = Arrownet()
