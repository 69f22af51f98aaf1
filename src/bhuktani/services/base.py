"""What a service group (one documented service, one wire shape) gives the flows, the
sandbox, the demo and the API's schema. Each group is one module beside this one, listed
in registry.py; nothing outside names a group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import Field

from bhuktani import money
from bhuktani.domain import State
from bhuktani.errors import field_error
from bhuktani.isps.base import Duration, Package, Subscriber
from bhuktani.services.fields import Reference, Username, WireModel, parse, reference_present


@dataclass(frozen=True)
class DetailsQuery:
    isp: str
    username: str
    reference: str | None


@dataclass(frozen=True)
class CommitQuery:
    reference: str
    amount_paisa: int
    duration_code: str
    # Exactly one of these names the subscriber: a session of a details call, or a username.
    session_id: int | None = None
    isp: str | None = None
    username: str | None = None
    package_code: int | None = None
    # Set by groups whose commit names the package by its title (a package_name field).
    package_title: str | None = None


@dataclass(frozen=True)
class CommitView:
    """A payment as a commit response shows it."""

    state: str
    payment_id: int
    receipt: str
    amount_paisa: int
    available_paisa: int
    # The merchant's service charge on it (books/charges.py), taken with the amount.
    charge_paisa: int = 0

    @property
    def consumed_paisa(self) -> int:
        """What the payment took from the merchant's credits: the amount and its charge."""
        return self.amount_paisa + self.charge_paisa


@dataclass(frozen=True)
class Examples:
    """Request bodies that succeed against the sandbox subscriber, without `token` and
    `reference`: the demo's curls and the API schema's examples. A session group's commit
    names a `session_id`, which the demo takes from its details call."""

    details: dict[str, Any]
    commit: dict[str, Any]


class Service(Protocol):
    """What every service, of two steps or of one, tells the sandbox, the settings and the
    registry."""

    # The path segment of its calls.
    slug: str
    # How people write it, for the demo and the API schema.
    title: str
    # The ISPs its ISP protocol reaches; an ISP belongs to one service.
    isps: tuple[str, ...]
    # The sandbox's subscribers of every ISP of the service: its document's test users,
    # as it shows them. The sandbox derives its scenario users (docs/SANDBOX.md) from the
    # first.
    sandbox_subscribers: tuple[Subscriber, ...]


class ServiceGroup(Service, Protocol):
    """A service of two steps: /api/servicegroup/{details,commit}/<slug>/."""

    # Whether a details call opens a session that the commit must name.
    uses_sessions: bool
    # The request bodies, for the OpenAPI schema.
    details_model: type[WireModel]
    commit_model: type[WireModel]
    examples: Examples

    def parse_details(self, data: dict[str, Any]) -> DetailsQuery: ...

    def render_details(self, subscriber: Subscriber, session_id: int | None) -> dict[str, Any]: ...

    def parse_commit(self, data: dict[str, Any]) -> CommitQuery: ...

    def choose(self, subscriber: Subscriber, query: CommitQuery) -> tuple[Package, Duration]:
        """The price the commit pays; raises Refusal 1010 naming the field at fault."""
        ...

    def render_commit(self, view: CommitView) -> dict[str, Any]: ...


def current_plan_price(
    subscriber: Subscriber, query: CommitQuery, *, duration_field: str, no_price: str
) -> tuple[Package, Duration]:
    """A session-less commit's price: the duration it names of the subscriber's current
    plan, at exactly the amount it sends. Raises 1010 naming `duration_field` (the
    document's name of the duration) or `amount`."""
    package = subscriber.current_package()
    duration = next(
        (d for d in (package.durations if package else ()) if d.code == query.duration_code),
        None,
    )
    if package is None or duration is None:
        raise field_error(duration_field, no_price)
    require_amount(query.amount_paisa, duration, "the plan price")
    return package, duration


def require_amount(amount_paisa: int, price: Duration, named: str) -> None:
    """The amount a commit sends is the price to the paisa, else 1010 on `amount`."""
    if amount_paisa != price.amount_paisa:
        raise field_error(
            "amount",
            f"Amount {money.format_rupees(amount_paisa)} does not match {named}"
            f" {money.format_rupees(price.amount_paisa)}",
        )


class ServiceSlugDetails(WireModel):
    """A details call of one billing system behind many ISPs, the ISP named by
    `service_slug`."""

    reference: Reference
    username: Username
    service_slug: str = Field(min_length=1, max_length=64)


def parse_slug_details(data: dict[str, Any], isps: tuple[str, ...]) -> DetailsQuery:
    """1012 without a reference, before anything else; an ISP not in `isps` is 1010."""
    reference_present(data)
    request = parse(ServiceSlugDetails, data)
    if request.service_slug not in isps:
        raise field_error("service_slug", f"Unknown service slug {request.service_slug!r}")
    return DetailsQuery(
        isp=request.service_slug, username=request.username, reference=request.reference
    )


PROCESSING_MESSAGE = "Transaction is being processed"
SUCCESS_MESSAGE = "Successfully Completed Transaction"


def message_for(state: str) -> str:
    return SUCCESS_MESSAGE if state == State.SUCCESS else PROCESSING_MESSAGE
