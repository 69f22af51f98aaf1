"""1011: a field valid on its own but refused by the ISP (its price changed since the
session was shown, say). The sandbox's prices never change, so a LIVE provider that
answers so stands in for the ISP."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bhuktani.infra.ttl_cache import TtlCache
from bhuktani.isps.base import (
    Lookup,
    NotFound,
    Order,
    Paid,
    PayResult,
    ProviderUnavailable,
    Refused,
    StatusResult,
    Subscriber,
)
from bhuktani.merchants.service import NewMerchant
from bhuktani.sandbox import catalog
from tests.conftest import AppClient
from tests.support import IspDouble, assert_books_balance, new_merchant


@dataclass
class PriceChangedIsp(IspDouble):
    settle_window_s: float = 0.0

    async def lookup(self, query: Lookup) -> Subscriber | None:
        return catalog.template(query.isp, query.username)

    async def pay(self, order: Order) -> PayResult:
        return Refused("The plan price changed to 1795.00", "amount")

    async def status(self, order: Order) -> StatusResult:
        return NotFound()


async def test_1011_isp_refused_field_names_it_and_releases_the_hold(
    client: AppClient,
) -> None:
    client.gateway.live["arrownet"] = PriceChangedIsp()
    merchant: NewMerchant = await new_merchant(client.gateway.db, live_rupees=10_000)
    body = {
        "token": merchant.live_token,
        "username": "Pradhanang",
        "amount": "1695.00",
        "duration": 1,
        "reference": "price-moved-1",
    }
    response = await client.post("/api/servicegroup/commit/arrownet/", json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["error_code"] == "1011"
    assert error["message"] == "Validation error"
    assert error["error_data"] == {"amount": ["The plan price changed to 1795.00"]}
    balance = await client.get("/api/balance", params={"token": merchant.live_token})
    assert balance.json()["credits_available"] == 10_000.0
    status = await client.get(
        "/api/service/status/", params={"token": merchant.live_token, "reference": "price-moved-1"}
    )
    assert status.json()["state"] == "Failed"
    await assert_books_balance(client.gateway.db)


@dataclass
class CountingIsp(IspDouble):
    lookups: int = 0
    settle_window_s: float = 0.0

    async def lookup(self, query: Lookup) -> Subscriber | None:
        self.lookups += 1
        return catalog.template(query.isp, query.username)

    async def pay(self, order: Order) -> PayResult:
        return Paid(str(order.payment_id))

    async def status(self, order: Order) -> StatusResult:
        return NotFound()


async def test_a_live_commit_is_priced_from_a_recent_answer_not_a_second_call(
    client: AppClient,
) -> None:
    """One ISP round trip per payment: a slow ISP then costs one latency, not two."""
    isp = CountingIsp()
    client.gateway.live["arrownet"] = isp
    client.gateway.subscribers = TtlCache(60)
    merchant = await new_merchant(client.gateway.db, live_rupees=10_000)
    for n in range(3):
        body = {
            "token": merchant.live_token,
            "username": "Pradhanang",
            "amount": "1695.00",
            "duration": 1,
            "reference": f"cached-{n}",
        }
        response = await client.post("/api/servicegroup/commit/arrownet/", json=body)
        assert response.json()["state"] == "Success", response.text
    assert isp.lookups == 1
    details = {"token": merchant.live_token, "username": "Pradhanang"}
    await client.post("/api/servicegroup/details/arrownet/", json=details)
    assert isp.lookups == 2, "a details call always asks the ISP afresh"
    await assert_books_balance(client.gateway.db)


@dataclass
class SlowLookupIsp(CountingIsp):
    answer: asyncio.Event = field(default_factory=asyncio.Event)

    async def lookup(self, query: Lookup) -> Subscriber | None:
        self.lookups += 1
        await self.answer.wait()
        return catalog.template(query.isp, query.username)


async def pradhanang_commit(client: AppClient, merchant: NewMerchant, reference: str) -> str:
    """A LIVE Arrownet commit of one month for Pradhanang: the state it answers."""
    body = {
        "token": merchant.live_token,
        "username": "Pradhanang",
        "amount": "1695.00",
        "duration": 1,
        "reference": reference,
    }
    response = await client.post("/api/servicegroup/commit/arrownet/", json=body)
    return str(response.json().get("state"))


async def test_concurrent_live_commits_for_one_subscriber_share_one_look_up(
    client: AppClient,
) -> None:
    """When the cached answer expires under load, the ISP is asked once, not by every
    payment waiting."""
    isp = SlowLookupIsp()
    client.gateway.live["arrownet"] = isp
    client.gateway.subscribers = TtlCache(60)
    merchant = await new_merchant(client.gateway.db, live_rupees=100_000)

    async def commit(n: int) -> str:
        return await pradhanang_commit(client, merchant, f"herd-{n}")

    payments = [asyncio.create_task(commit(n)) for n in range(12)]
    while isp.lookups == 0:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # every payment is waiting on the one look-up by now
    isp.answer.set()
    assert await asyncio.gather(*payments) == ["Success"] * 12
    assert isp.lookups == 1
    await assert_books_balance(client.gateway.db)


async def test_an_answer_about_to_expire_is_asked_again_while_commits_go_on(
    client: AppClient,
) -> None:
    """In its last part of life a cached answer still prices commits at once, and one
    look-up in the background replaces it: its expiry holds no payment for a round trip."""
    isp = SlowLookupIsp()
    client.gateway.live["arrownet"] = isp
    # Every answer is in its refresh window from the start.
    client.gateway.subscribers = TtlCache(60, refresh_ahead_s=60)
    merchant = await new_merchant(client.gateway.db, live_rupees=100_000)

    async def commit(n: int) -> str:
        return await pradhanang_commit(client, merchant, f"ahead-{n}")

    isp.answer.set()
    assert await commit(0) == "Success"
    assert isp.lookups == 1
    isp.answer.clear()  # the ISP's look-ups hang from now on
    assert [await commit(n) for n in (1, 2, 3)] == ["Success"] * 3
    assert isp.lookups == 2, "one refresh in flight, shared by the commits that saw it due"
    isp.answer.set()
    async with asyncio.timeout(5):
        while client.gateway.lookups:
            await asyncio.sleep(0.01)
    assert await commit(4) == "Success"
    assert isp.lookups == 3, "the refreshed answer is due again at once (refresh_ahead_s=60)"
    await assert_books_balance(client.gateway.db)


@dataclass
class DownIsp(CountingIsp):
    async def lookup(self, query: Lookup) -> Subscriber | None:
        self.lookups += 1
        raise ProviderUnavailable("connection refused")


async def test_a_retry_learns_its_payment_before_the_isp_is_asked_again(
    client: AppClient,
) -> None:
    """The reference answers first (1013 with the first outcome), even when the ISP has
    gone down since, or the retry's amount no longer prices."""
    client.gateway.live["arrownet"] = CountingIsp()
    merchant = await new_merchant(client.gateway.db, live_rupees=10_000)
    body = {
        "token": merchant.live_token,
        "username": "Pradhanang",
        "amount": "1695.00",
        "duration": 1,
        "reference": "retried-1",
    }
    first = await client.post("/api/servicegroup/commit/arrownet/", json=body)
    assert first.json()["state"] == "Success", first.text
    down = DownIsp()
    client.gateway.live["arrownet"] = down
    for retry in (body, {**body, "amount": "1.00"}):
        response = await client.post("/api/servicegroup/commit/arrownet/", json=retry)
        assert response.status_code == 400, response.text
        error = response.json()
        assert error["error_code"] == "1013", error
        assert error["error_data"] == {"id": first.json()["id"], "state": "Success"}
    balance = await client.get("/api/balance", params={"token": merchant.live_token})
    assert balance.json()["credits_available"] == 10_000.0 - 1695.0
    await assert_books_balance(client.gateway.db)
