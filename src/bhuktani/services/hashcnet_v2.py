"""HashCNet V2 (one billing system behind 15 ISPs): request models and response shapes
of seeds/hashcnet-v2.md, and the choice of a price from a session's packages."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from bhuktani import money
from bhuktani.errors import field_error
from bhuktani.isps.base import Duration, Package, Subscriber
from bhuktani.services.base import (
    CommitQuery,
    CommitView,
    DetailsQuery,
    Examples,
    message_for,
)
from bhuktani.services.fields import (
    AmountPaisa,
    LooseCode,
    LooseId,
    Reference,
    Username,
    WireModel,
    parse,
    reference_present,
)

SLUG = "hashcnet-v2"

ISPS = (
    "airson-internet",
    "broadband-solutions",
    "everest-wireless",
    "fast-speed",
    "fiberworld-communication",
    "hons",
    "janaki-cable-network",
    "sahaj-network",
    "super-eight-networks",
    "ultra-net",
    "unified-communication-isp",
    "bbn-internet",
    "pokhara-internet-lekhnath",
    "vns",
    "techminds",
)


def _price(code: str, title: str, rupees: int, days: int) -> Duration:
    return Duration(code=code, title=title, amount_paisa=rupees * 100, days=days)


PACKAGES = (
    Package(
        "Fiber Gold",
        9,
        (
            _price("1", "1 Month", 1232, 30),
            _price("3", "3 Months", 7876, 90),
            _price("6", "6 Months", 15750, 180),
            _price("12", "12 Months", 15750, 360),
            _price("custom_2", "15 Days", 1634, 15),
            _price("custom_3", "60 Days", 859, 60),
        ),
    ),
    Package(
        "FTTH-50Mbps",
        9,
        (
            _price("1", "1 Month", 999, 30),
            _price("3", "3 Months", 2800, 90),
            _price("6", "6 Months", 5300, 180),
            _price("12", "12 Months", 9999, 360),
            _price("custom_1", "12M + 1 IPTV", 13500, 360),
        ),
    ),
    Package("TESTING", 71, (_price("1", "1 Month", 2, 30),)),
)

# The document's test subscriber, at every ISP of the group.
SANDBOX_USER = Subscriber(
    username="jeetenaug4",
    customer_id="23123213",
    full_name="jeetenaug4",
    current_plan="Fiber Gold",
    days_remaining=314,
    has_due=False,
    accept_advance_payment=True,
    packages=PACKAGES,
)


class DetailsRequest(WireModel):
    reference: Reference
    username: Username
    service_slug: str = Field(min_length=1, max_length=64)


class CommitRequest(WireModel):
    reference: Reference
    session_id: LooseId
    package_code: LooseId
    duration_code: LooseCode
    amount: AmountPaisa


def _cost(amount_paisa: int) -> int | float:
    """The documents show package prices as integers where they are whole rupees."""
    rupees = money.to_rupees(amount_paisa)
    return int(rupees) if rupees.is_integer() else rupees


def _plan_title(duration: Duration) -> str:
    if duration.code.isdigit():
        months = int(duration.code)
        return f"{months} month" if months == 1 else f"{months} months"
    return duration.title


class HashcnetV2:
    slug = SLUG
    title = "HashCNet V2"
    isps = ISPS
    uses_sessions = True
    details_model: type[WireModel] = DetailsRequest
    commit_model: type[WireModel] = CommitRequest
    sandbox_subscriber = SANDBOX_USER
    examples = Examples(
        details={"username": "jeetenaug4", "service_slug": "vns"},
        commit={
            "session_id": 4913288027211,
            "package_code": 9,
            "duration_code": "1",
            "amount": 999.00,
        },
    )

    def parse_details(self, data: dict[str, Any]) -> DetailsQuery:
        reference_present(data)
        request = parse(DetailsRequest, data)
        if request.service_slug not in ISPS:
            raise field_error("service_slug", f"Unknown service slug {request.service_slug!r}")
        return DetailsQuery(
            isp=request.service_slug,
            username=request.username,
            reference=request.reference,
        )

    def render_details(self, subscriber: Subscriber, session_id: int | None) -> dict[str, Any]:
        assert session_id is not None
        current = subscriber.current_package()
        return {
            "customer_name": f"{subscriber.username}({subscriber.customer_id})",
            "current_plan": subscriber.current_plan,
            "accept_advance_payment": subscriber.accept_advance_payment,
            "days_remaining": subscriber.days_remaining,
            "has_due": "true" if subscriber.has_due else "false",
            "plan_detail": [
                {
                    "duration": f"{d.code} month(s)",
                    "duration_title": _plan_title(d),
                    "total_cost": money.to_rupees(d.amount_paisa),
                    "duration_code": d.code,
                }
                for d in (current.durations if current else ())
            ],
            "available_packages": [
                {
                    "title": package.title,
                    "package_code": package.code,
                    "duration": [
                        {
                            "total_cost": _cost(d.amount_paisa),
                            "duration_code": d.code,
                            "duration_title": d.title,
                        }
                        for d in package.durations
                    ],
                }
                for package in subscriber.packages
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
            duration_code=request.duration_code,
            session_id=request.session_id,
            package_code=request.package_code,
        )

    def choose(self, subscriber: Subscriber, query: CommitQuery) -> tuple[Package, Duration]:
        packages = [p for p in subscriber.packages if p.code == query.package_code]
        if not packages:
            raise field_error("package_code", f"No package with code {query.package_code}")
        offers = [(p, d) for p in packages for d in p.durations if d.code == query.duration_code]
        if not offers:
            raise field_error(
                "duration_code",
                f"Package {query.package_code} has no duration {query.duration_code!r}",
            )
        matching = [(p, d) for p, d in offers if d.amount_paisa == query.amount_paisa]
        if not matching:
            prices = ", ".join(sorted({money.format_rupees(d.amount_paisa) for _, d in offers}))
            raise field_error(
                "amount",
                f"Amount {money.format_rupees(query.amount_paisa)} does not match the plan price {prices}",
            )
        if len(matching) > 1:
            raise field_error(
                "package_code",
                f"Package code {query.package_code} with this duration and amount names"
                f" {len(matching)} packages",
            )
        return matching[0]

    def render_commit(self, view: CommitView) -> dict[str, Any]:
        return {
            "status": True,
            "state": view.state,
            "message": message_for(view.state),
            "extra_data": {},
            "detail": view.receipt,
            "credits_consumed": money.to_rupees(view.amount_paisa),
            "credits_available": money.to_rupees(view.available_paisa),
            "id": view.payment_id,
        }


GROUP = HashcnetV2()
