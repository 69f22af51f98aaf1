"""What the tests of the groups of one shape (services/customer_packages.py) share: each
group's documented paying user and commit, calls made as a client of the documents makes
them (the session_id sent back quoted, as the documents write it: G2), the documented
answers compared field by field and JSON type by JSON type, and a LIVE ISP (isp-sim)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from bhuktani.isps.base import Duration, Package
from bhuktani.services import konnect, net_max
from bhuktani.services.base import ServiceGroup
from tests.seeds import shape_differences
from tests.services.support import (
    body,
)


def fixtures_of(module: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        (Path(__file__).parent / "fixtures" / f"{module}.json").read_text()
    )
    return found


KONNECT_FIXTURES = fixtures_of("konnect")
NET_MAX_FIXTURES = fixtures_of("net_max")
# Per call and clock-relative values: typed, not compared (decision G9).
PER_CALL = {"session_id", "id", "credits_available"}


@dataclass(frozen=True)
class Case:
    """A group and its document's payment: the user its details call names, the commit
    and the answer it documents, and a package_id of the other test user."""

    group: ServiceGroup
    details: dict[str, Any]
    commit: dict[str, Any]
    paid: dict[str, Any]
    foreign_package: str

    @property
    def details_path(self) -> str:
        return f"/api/servicegroup/details/{self.group.slug}/"

    @property
    def commit_path(self) -> str:
        return f"/api/servicegroup/commit/{self.group.slug}/"

    @property
    def price(self) -> float:
        consumed: float = self.paid["credits_consumed"]
        return consumed

    @property
    def priced(self) -> tuple[Package, Duration]:
        """The documented commit's package and price, as the sandbox has them."""
        return next(
            (package, duration)
            for subscriber in self.group.sandbox_subscribers
            for package, duration in subscriber.offers()
            if duration.code == self.commit["package_id"]
        )


KONNECT = Case(
    konnect.GROUP,
    details=KONNECT_FIXTURES["details"]["active"]["request"],
    commit=KONNECT_FIXTURES["commit"]["request"],
    paid=KONNECT_FIXTURES["commit"]["answer"],
    foreign_package="1-4412-8-1",
)
NET_MAX = Case(
    net_max.GROUP,
    details=NET_MAX_FIXTURES["details"]["request"],
    commit=NET_MAX_FIXTURES["commit"]["request"],
    paid=NET_MAX_FIXTURES["commit"]["answer"],
    foreign_package="1-13286-5-3",
)


def comparable(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer without its per-call values: the session, the payment's id, the balance
    and the subscription's end date (G9)."""
    kept = {k: v for k, v in answer.items() if k not in PER_CALL}
    if isinstance(kept.get("current_subscription"), dict):
        kept["current_subscription"] = {
            k: v for k, v in kept["current_subscription"].items() if k != "end_date"
        }
    return kept


def same_answer(answer: dict[str, Any], documented: dict[str, Any]) -> None:
    assert shape_differences(documented, answer) == [], answer
    assert comparable(answer) == comparable(documented)


def end_date(answer: dict[str, Any]) -> date:
    return date.fromisoformat(answer["current_subscription"]["end_date"])


async def details(
    client: httpx.AsyncClient, case: Case, token: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(case.details_path, json=body(token, case.details, **fields))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def session_of(client: httpx.AsyncClient, case: Case, token: str, **fields: Any) -> str:
    """A fresh session of the documented user (or the one `fields` name), quoted as the
    documents quote it in the commit."""
    return str((await details(client, case, token, **fields))["session_id"])


async def commit(
    client: httpx.AsyncClient, case: Case, token: str, session_id: str, **fields: Any
) -> httpx.Response:
    return await client.post(
        case.commit_path, json=body(token, case.commit, session_id=session_id, **fields)
    )
