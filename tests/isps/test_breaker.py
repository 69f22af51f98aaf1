"""The circuit breaker per LIVE ISP: degraded after repeated failures, new look-ups and
payments fail fast with 1018 and no money held, back after a successful probe."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from bhuktani.isps.base import (
    Lookup,
    NotFound,
    Order,
    Paid,
    PayResult,
    ProviderUnavailable,
    StatusResult,
    Subscriber,
    Unknown,
)
from bhuktani.isps.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from bhuktani.merchants.service import NewMerchant
from bhuktani.payments import policy
from bhuktani.sandbox import catalog
from tests.conftest import AppClient
from tests.support import METRICS_AUTH, IspDouble, assert_books_balance, new_merchant


def test_opens_after_the_threshold_and_lets_one_probe_through_after_cooldown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    breaker = Breaker(failure_threshold=3, cooldown_s=10)
    for _ in range(2):
        breaker.failed()
    assert breaker.state == CLOSED and breaker.allow()
    breaker.failed()
    assert breaker.state == OPEN
    assert not breaker.allow()
    clock[0] += 10
    assert breaker.allow(), "one probe after the cool-down"
    assert breaker.state == HALF_OPEN
    assert not breaker.allow(), "only one probe at a time"
    breaker.failed()
    assert breaker.state == OPEN and not breaker.allow(), "a failed probe opens it again"
    clock[0] += 10
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == CLOSED and breaker.allow() and breaker.allow()


def test_a_probe_that_never_reached_the_isp_does_not_stick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    breaker = Breaker(failure_threshold=1, cooldown_s=5)
    breaker.failed()
    clock[0] += 5
    assert breaker.allow()
    # ...the request was refused before calling the ISP: no success, no failure.
    assert not breaker.allow()
    clock[0] += 5
    assert breaker.allow(), "another probe once the first is overdue"


@dataclass
class DownIsp(IspDouble):
    """An ISP that answers nothing until told to come back."""

    up: bool = False
    calls: list[str] = field(default_factory=list)
    settle_window_s: float = 0.0

    async def lookup(self, query: Lookup) -> Subscriber | None:
        self.calls.append("lookup")
        if not self.up:
            raise ProviderUnavailable("connection refused")
        return catalog.template(query.isp, query.username)

    async def pay(self, order: Order) -> PayResult:
        self.calls.append("pay")
        return Paid("42") if self.up else Unknown("timeout")

    async def status(self, order: Order) -> StatusResult:
        return NotFound()


async def test_a_degraded_isp_fails_fast_with_no_money_held(client: AppClient) -> None:
    isp = DownIsp()
    client.gateway.live["arrownet"] = isp
    client.gateway.breakers.failure_threshold = 3
    client.gateway.breakers.cooldown_s = 3600
    merchant: NewMerchant = await new_merchant(client.gateway.db, live_rupees=10_000)
    body = {"token": merchant.live_token, "username": "Pradhanang"}
    for _ in range(3):
        response = await client.post("/api/servicegroup/details/arrownet/", json=body)
        assert response.json()["error_code"] == "1018"
    assert isp.calls == ["lookup"] * 3
    commit = body | {"amount": "1695.00", "duration": 1, "reference": "breaker-1"}
    response = await client.post("/api/servicegroup/commit/arrownet/", json=commit)
    assert response.status_code == 400
    assert response.json()["error_code"] == "1018"
    assert isp.calls == ["lookup"] * 3, "the degraded ISP is not called"
    balance = await client.get("/api/balance", params={"token": merchant.live_token})
    assert balance.json()["credits_available"] == 10_000.0
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["isps"]["live:arrownet"]["state"] == OPEN
    metrics = await client.get("/metrics", headers=METRICS_AUTH)
    assert 'bhuktani_isp_degraded{isp="arrownet"} 1.0' in metrics.text
    await assert_books_balance(client.gateway.db)


async def test_a_successful_probe_brings_the_isp_back(client: AppClient) -> None:
    isp = DownIsp()
    client.gateway.live["arrownet"] = isp
    client.gateway.breakers.failure_threshold = 1
    client.gateway.breakers.cooldown_s = 0
    merchant = await new_merchant(client.gateway.db, live_rupees=10_000)
    body = {"token": merchant.live_token, "username": "Pradhanang"}
    await client.post("/api/servicegroup/details/arrownet/", json=body)
    isp.up = True
    response = await client.post("/api/servicegroup/details/arrownet/", json=body)
    assert response.status_code == 200, "the probe went through and succeeded"
    health = await client.get("/healthz")
    assert health.json()["isps"]["live:arrownet"]["state"] == CLOSED
    await assert_books_balance(client.gateway.db)


async def test_the_sandbox_never_degrades(client: AppClient, merchant: NewMerchant) -> None:
    assert policy.breaker(client.gateway, "test", "arrownet") is None
