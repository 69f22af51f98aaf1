"""HashCNet V1 (one billing system behind 7 ISPs): request models and response shapes of
khalti-docs/Internet/hashcnet/v1.md. A details call shows the subscriber's one package and
its total and opens a session; the commit pays that total for that package."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from bhuktani import money
from bhuktani.domain import State
from bhuktani.errors import CannotFulfil, field_error
from bhuktani.isps.base import Duration, Package, Subscriber
from bhuktani.services.base import (
    CommitQuery,
    CommitView,
    DetailsQuery,
    Examples,
    ServiceSlugDetails,
    message_for,
    parse_slug_details,
    require_amount,
)
from bhuktani.services.fields import (
    AmountPaisa,
    LooseId,
    Reference,
    WireModel,
    parse,
    reference_present,
)

SLUG = "hashcnet"

ISPS = (
    "askina",
    "kshireshwar-network",
    "life-net",
    "limpid-ict-solution",
    "lnt-infotech",
    "mega-cable-net",
    "nepalink",
)

PACKAGES = (
    Package(
        "FOC users / 6M",
        1,
        # The document's total_amount for its test user (decision H1): 10 rupees.
        (Duration.in_rupees("6", "6 Months", 10, 180),),
    ),
)

# The document's test subscriber, at every ISP of the group.
SANDBOX_USER = Subscriber(
    username="pnt_test",
    customer_id="21",
    full_name="pnt_test",
    current_plan="FOC users / 6M",
    days_remaining=0,
    has_due=False,
    accept_advance_payment=True,
    packages=PACKAGES,
)

# What a commit's answer says in `detail`: the document's words for a success.
PAID_DETAIL = "Payment successfully created."
PENDING_DETAIL = "Payment is being processed."


class CommitRequest(WireModel):
    reference: Reference
    session_id: LooseId
    package_name: str = Field(min_length=1, max_length=100)
    amount: AmountPaisa


def _total(subscriber: Subscriber) -> tuple[Package, Duration]:
    """The package a details call shows and the total it costs: the current plan's price."""
    package = subscriber.current_package()
    if package is None or not package.durations:
        raise CannotFulfil("The subscriber has no plan to pay for")
    return package, package.durations[0]


class HashcnetV1:
    slug = SLUG
    title = "HashCNet V1"
    isps = ISPS
    uses_sessions = True
    details_model: type[WireModel] = ServiceSlugDetails
    commit_model: type[WireModel] = CommitRequest
    sandbox_subscribers = (SANDBOX_USER,)
    examples = Examples(
        details={"username": "pnt_test", "service_slug": "lnt-infotech"},
        commit={"session_id": 172, "package_name": "FOC users / 6M", "amount": 10.00},
    )

    def parse_details(self, data: dict[str, Any]) -> DetailsQuery:
        return parse_slug_details(data, ISPS)

    def render_details(self, subscriber: Subscriber, session_id: int | None) -> dict[str, Any]:
        assert session_id is not None
        package, total = _total(subscriber)
        return {
            "package_name": package.title,
            "total_amount": money.to_rupees_shown(total.amount_paisa),
            "session_id": session_id,
            "status": True,
        }

    def parse_commit(self, data: dict[str, Any]) -> CommitQuery:
        reference_present(data)
        request = parse(CommitRequest, data)
        return CommitQuery(
            reference=request.reference,
            amount_paisa=request.amount,
            duration_code="",
            session_id=request.session_id,
            package_title=request.package_name,
        )

    def choose(self, subscriber: Subscriber, query: CommitQuery) -> tuple[Package, Duration]:
        package, total = _total(subscriber)
        if query.package_title != package.title:
            raise field_error(
                "package_name",
                f"Package {query.package_title!r} is not the one the details showed"
                f" ({package.title!r})",
            )
        require_amount(query.amount_paisa, total, "the total")
        return package, total

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


GROUP = HashcnetV1()
