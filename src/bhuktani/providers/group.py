"""What a service group (one documented service, one wire shape) gives the flows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from bhuktani.providers.base import Duration, Package, Subscriber
from bhuktani.providers.wire import WireModel


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


@dataclass(frozen=True)
class CommitView:
    """A payment as a commit response shows it."""

    state: str
    payment_id: int
    receipt: str
    amount_paisa: int
    available_paisa: int


class ServiceGroup(Protocol):
    slug: str
    # Whether a details call opens a session that the commit must name.
    uses_sessions: bool
    # The request bodies, for the OpenAPI schema.
    details_model: type[WireModel]
    commit_model: type[WireModel]

    def parse_details(self, data: dict[str, Any]) -> DetailsQuery: ...

    def render_details(self, subscriber: Subscriber, session_id: int | None) -> dict[str, Any]: ...

    def parse_commit(self, data: dict[str, Any]) -> CommitQuery: ...

    def choose(self, subscriber: Subscriber, query: CommitQuery) -> tuple[Package, Duration]:
        """The price the commit pays; raises ApiError 1010 naming the field at fault."""
        ...

    def render_commit(self, view: CommitView) -> dict[str, Any]: ...


PROCESSING_MESSAGE = "Transaction is being processed"
SUCCESS_MESSAGE = "Successfully Completed Transaction"


def message_for(state: str) -> str:
    return SUCCESS_MESSAGE if state == "Success" else PROCESSING_MESSAGE
