"""The scenario users of SANDBOX.md, on both providers, through the in-process sandbox
(TEST tokens) and through a real `isp-sim` process over loopback (LIVE tokens)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bhuktani.api.app import create_app
from tests.support import (
    assert_books_balance,
    eventually,
    fast_settings,
    free_port,
    new_merchant,
    wait_healthy,
)

SIM_SLOW_DELAY_S = 1.5


@pytest.fixture(scope="module")
def isp_sim() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bhuktani",
            "isp-sim",
            "--port",
            str(port),
            "--slow-delay-s",
            str(SIM_SLOW_DELAY_S),
            "--api-key",
            "sim-key",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class Path:
    http: httpx.AsyncClient
    token: str
    env: str

    async def post(self, service: str, verb: str, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post(
            f"/api/servicegroup/{verb}/{service}/", json={"token": self.token, **body}
        )

    async def available(self) -> float:
        response = await self.http.get("/api/balance", params={"token": self.token})
        value: float = response.json()["credits_available"]
        return value

    async def state(self, reference: str) -> str:
        response = await self.http.get(
            "/api/service/status/", params={"token": self.token, "reference": reference}
        )
        value: str = response.json()["state"]
        return value


@pytest.fixture(params=["sandbox", "isp-sim"])
async def path(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Path]:
    live = request.param == "isp-sim"
    overrides: dict[str, Any] = {}
    if live:
        sim_url = request.getfixturevalue("isp_sim")
        overrides = {
            "isps": {
                "hashcnet-v2": {"base_url": sim_url, "api_key": "sim-key"},
                "arrownet": {"base_url": sim_url, "api_key": "sim-key"},
            },
            # Shorter than the simulator's slow answer, as in production.
            "isp_timeout_s": 0.5,
        }
    app = create_app(fast_settings(db_url, **overrides))
    async with app.router.lifespan_context(app):
        db = app.state.gateway.db
        merchant = await new_merchant(db, test_rupees=100_000, live_rupees=100_000)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            token = merchant.live_token if live else merchant.test_token
            yield Path(http, token, "live" if live else "test")
        await assert_books_balance(db)


def reference() -> str:
    return f"s-{uuid.uuid4().hex[:16]}"


async def pay(path: Path, service: str, username: str, ref: str) -> httpx.Response:
    """Pay one month for the subscriber, priced from a details call as a client does."""
    if service == "arrownet":
        return await path.post(
            "arrownet",
            "commit",
            {"username": username, "amount": "1695.00", "duration": 1, "reference": ref},
        )
    details = await path.post(
        "hashcnet-v2",
        "details",
        {"username": username, "service_slug": "vns", "reference": ref},
    )
    assert details.status_code == 200, details.text
    return await path.post(
        "hashcnet-v2",
        "commit",
        {
            "session_id": details.json()["session_id"],
            "package_code": 9,
            "duration_code": "1",
            "amount": 1232,
            "reference": ref,
        },
    )


PRICE = {"arrownet": 1695.0, "hashcnet-v2": 1232.0}
SERVICES = ["arrownet", "hashcnet-v2"]


async def details(path: Path, service: str, username: str) -> dict[str, Any]:
    body = {"username": username}
    if service == "hashcnet-v2":
        body |= {"service_slug": "vns", "reference": reference()}
    response = await path.post(service, "details", body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize("service", SERVICES)
async def test_due_user_has_a_due(path: Path, service: str) -> None:
    body = await details(path, service, "due-user")
    assert body["has_due"] == ("true" if service == "hashcnet-v2" else True)


@pytest.mark.parametrize("service", SERVICES)
async def test_expired_user_has_no_days_remaining(path: Path, service: str) -> None:
    assert (await details(path, service, "expired-user"))["days_remaining"] == 0


@pytest.mark.parametrize("service", SERVICES)
async def test_documented_user_pays_and_gains_a_month(path: Path, service: str) -> None:
    user = "Pradhanang" if service == "arrownet" else "jeetenaug4"
    before = (await details(path, service, user))["days_remaining"]
    response = await pay(path, service, user, reference())
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "Success"
    assert (await details(path, service, user))["days_remaining"] == before + 30


@pytest.mark.parametrize("service", SERVICES)
async def test_refuse_user_is_refused_with_1021_and_nothing_charged(
    path: Path, service: str
) -> None:
    before = await path.available()
    response = await pay(path, service, "refuse-user", ref := reference())
    assert response.status_code == 400
    assert response.json()["error_code"] == "1021"
    assert await path.available() == before
    assert await path.state(ref) == "Failed"


@pytest.mark.parametrize("username", ["slow-user", "flaky-user"])
@pytest.mark.parametrize("service", SERVICES)
async def test_unclear_answer_is_processing_then_success(
    path: Path, service: str, username: str
) -> None:
    before = await path.available()
    response = await pay(path, service, username, ref := reference())
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "Processing"
    assert response.json()["message"] == "Transaction is being processed"
    assert response.json()["credits_consumed"] == PRICE[service]
    assert await path.available() == before - PRICE[service], "the credits are held"

    async def success() -> bool:
        return await path.state(ref) == "Success"

    await eventually(success, timeout_s=15)
    assert await path.available() == before - PRICE[service]


@pytest.mark.parametrize("service", SERVICES)
async def test_lost_user_is_processing_then_failed_and_refunded_in_full(
    path: Path, service: str
) -> None:
    before = await path.available()
    response = await pay(path, service, "lost-user", ref := reference())
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "Processing"
    assert await path.available() == before - PRICE[service]

    async def failed() -> bool:
        return await path.state(ref) == "Failed"

    await eventually(failed, timeout_s=15)
    assert await path.available() == before
