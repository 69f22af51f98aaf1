"""What the tests of the groups of one shape (services/customer_packages.py) share: each
group's documented paying user and commit, calls made as a client of the documents makes
them (the session_id sent back quoted, as the documents write it: G2), the documented
answers compared field by field and JSON type by JSON type, and a LIVE ISP (isp-sim)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from bhuktani.isps.adapter import IspHttpProvider
from bhuktani.isps.base import Duration, Package
from bhuktani.sandbox import isp_sim
from bhuktani.services import konnect, net_max
from bhuktani.services.base import ServiceGroup
from tests.conftest import AppClient
from tests.seeds import shape_differences


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


def fresh_reference() -> str:
    return f"ref-{uuid.uuid4().hex}"


def body(token: str, example: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"token": token, "reference": fresh_reference(), **example, **fields}


async def balance(client: httpx.AsyncClient, token: str) -> float:
    answer = await client.get("/api/balance", headers={"Authorization": f"Token {token}"})
    assert answer.status_code == 200, answer.text
    available: float = answer.json()["credits_available"]
    return available


async def state_of(client: httpx.AsyncClient, token: str, reference: str) -> str:
    answer = await client.request(
        "GET", "/api/service/status/", json={"token": token, "reference": reference}
    )
    assert answer.status_code == 200, answer.text
    state: str = answer.json()["state"]
    return state


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


def assert_refused(response: httpx.Response, code: str, field: str | None = None) -> None:
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error_code"] == code, answer
    if field is not None:
        assert field in answer["error_data"], answer


SIM_KEY = "customer-packages-sim-key"


@asynccontextmanager
async def live_isp(client: AppClient, slug: str) -> AsyncIterator[isp_sim.IspSimulator]:
    """The group's LIVE ISP system: isp-sim over our ISP protocol."""
    server, simulator = await isp_sim.start("127.0.0.1", 0, api_key=SIM_KEY, slow_delay_s=1.0)
    port = server.sockets[0].getsockname()[1]
    provider = IspHttpProvider(
        group=slug,
        base_url=f"http://127.0.0.1:{port}",
        api_key=SIM_KEY,
        connect_timeout_s=1.0,
        timeout_s=2.0,
        max_connections=4,
        settle_window_s=120.0,
    )
    client.gateway.live[slug] = provider
    try:
        yield simulator
    finally:
        del client.gateway.live[slug]
        await provider.aclose()
        await isp_sim.stop(server, simulator)
