"""Single-step payments (`POST /api/use/<slug>/`) through their whole life: held and
Queued, sent by the reconciler's first round, settled like any payment whose outcome is
not known yet, and told by the status look-up and the callback. The documents' rules on
the request (decisions O1-O6) refuse before anything is held."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from bhuktani.api.app import create_app
from bhuktani.callbacks import delivery
from bhuktani.merchants import service as merchants
from bhuktani.merchants.service import NewMerchant
from bhuktani.payments import reconcile
from bhuktani.sandbox import isp_sim
from bhuktani.services import registry
from bhuktani.services.eastlink import GROUP as EASTLINK
from bhuktani.services.metrolink import GROUP as METROLINK
from bhuktani.services.royal_network import GROUP as ROYAL_NETWORK
from tests.conftest import AppClient
from tests.receiver import receiving
from tests.services.single_step import balance, final_state, state_of
from tests.services.support import serving_isp_sim
from tests.support import KEY, assert_books_balance, eventually, fast_settings, new_merchant

USE = f"/api/use/{EASTLINK.slug}/"


def request(token: str, **fields: Any) -> dict[str, Any]:
    return {"token": token, "reference": f"ref-{uuid.uuid4().hex}", **EASTLINK.example, **fields}


async def use(client: AppClient, body: dict[str, Any], path: str = USE) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["state"] == "Queued"
    return answer


@pytest_asyncio.fixture
async def held(db_url: str) -> AsyncIterator[AppClient]:
    """A gateway whose reconciler does not run: the test runs its rounds."""
    app = create_app(fast_settings(db_url, reconciler_enabled=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AppClient(transport=transport, base_url="http://gateway") as http:
            http.gateway = app.state.gateway
            yield http


async def test_until_its_first_round_a_payment_is_queued_everywhere(held: AppClient) -> None:
    merchant = await new_merchant(held.gateway.db)
    body = request(merchant.test_token)
    queued = await use(held, body)
    assert await state_of(held, merchant.test_token, body["reference"]) == "Queued"
    bulk = await held.get(
        "/api/service/bulk/status/",
        params={
            "token": merchant.test_token,
            "references": body["reference"],
            "reference_length": "1",
        },
    )
    assert bulk.status_code == 200, bulk.text
    assert [entry["state"] for entry in bulk.json()["detail"]] == ["Queued"]
    again = await held.post(USE, json=body)
    assert again.json()["error_data"] == {"id": queued["id"], "state": "Queued"}
    assert await reconcile.run_once(held.gateway) >= 1
    assert await state_of(held, merchant.test_token, body["reference"]) == "Success"
    await assert_books_balance(held.gateway.db)


def test_six_single_step_services_are_served() -> None:
    assert {s.slug for s in registry.SINGLE_STEP} == {
        "virtual-network",
        "eastlink",
        "royal-network",
        "pokhara-internet",
        "infonet-communication",
        "metrolink",
    }


async def test_both_paths_are_served_with_and_without_the_slash(
    client: AppClient, merchant: NewMerchant
) -> None:
    """Decision O2: royal-network and pokhara-internet are written without it."""
    bare = f"/api/use/{ROYAL_NETWORK.slug}"
    await use(client, request(merchant.test_token), path=bare)


async def test_the_refuse_user_is_queued_then_failed_and_refunded(
    client: AppClient, merchant: NewMerchant
) -> None:
    before = await balance(client, merchant.test_token)
    body = request(merchant.test_token, username="refuse-user")
    await use(client, body)
    assert await final_state(client, merchant.test_token, body["reference"]) == "Failed"
    assert await balance(client, merchant.test_token) == before
    await assert_books_balance(client.gateway.db)


async def test_an_unknown_user_is_queued_then_failed_and_refunded(
    client: AppClient, merchant: NewMerchant
) -> None:
    """Decision O4: there is no look-up before the payment; the ISP refuses it."""
    before = await balance(client, merchant.test_token)
    body = request(merchant.test_token, username="nobody_here")
    await use(client, body)
    assert await final_state(client, merchant.test_token, body["reference"]) == "Failed"
    assert await balance(client, merchant.test_token) == before


@pytest.mark.parametrize(
    ("username", "final"),
    [("slow-user", "Success"), ("flaky-user", "Success"), ("lost-user", "Failed")],
)
async def test_a_payment_without_an_answer_settles_by_status_questions(
    client: AppClient, merchant: NewMerchant, username: str, final: str
) -> None:
    """The first round's pay gets no answer; later rounds ask the ISP's status: applied
    (slow, flaky) is Success, never seen past the settle window (lost) is Failed."""
    before = await balance(client, merchant.test_token)
    body = request(merchant.test_token, username=username)
    await use(client, body)
    assert await final_state(client, merchant.test_token, body["reference"]) == final
    assert await balance(client, merchant.test_token) == before - (100 if final == "Success" else 0)
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize(
    ("path", "fields", "field"),
    [
        (USE, {"amount": 99}, "amount"),
        (USE, {"amount": "99.99"}, "amount"),
        (USE, {"amount": 0}, "amount"),
        (f"/api/use/{METROLINK.slug}/", {"amount": 50001}, "amount"),
        (f"/api/use/{ROYAL_NETWORK.slug}/", {"username": "!!!"}, "username"),
        (f"/api/use/{ROYAL_NETWORK.slug}/", {"username": "- -"}, "username"),
        (USE, {"mobile_number": ""}, "mobile_number"),
        (f"/api/use/{METROLINK.slug}/", {"address": ""}, "address"),
    ],
)
async def test_the_documented_rules_refuse_1010_before_anything_is_held(
    client: AppClient, merchant: NewMerchant, path: str, fields: dict[str, Any], field: str
) -> None:
    """Decisions O5 and O6."""
    before = await balance(client, merchant.test_token)
    service = next(s for s in registry.SINGLE_STEP if path.startswith(f"/api/use/{s.slug}"))
    body = {"token": merchant.test_token, "reference": "r-1", **service.example, **fields}
    response = await client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "1010"
    assert field in response.json()["error_data"]
    assert await balance(client, merchant.test_token) == before


async def test_an_amount_at_the_bounds_is_taken(client: AppClient, merchant: NewMerchant) -> None:
    await use(client, request(merchant.test_token, amount=100))
    metrolink = {
        "token": merchant.test_token,
        "reference": f"ref-{uuid.uuid4().hex}",
        **METROLINK.example,
        "amount": "50000.00",
    }
    await use(client, metrolink, path=f"/api/use/{METROLINK.slug}/")


async def test_a_duplicate_reference_is_1013_and_charges_nothing(held: AppClient) -> None:
    merchant = await new_merchant(held.gateway.db)
    body = request(merchant.test_token)
    first = await use(held, body)
    before = await balance(held, merchant.test_token)
    again = await held.post(USE, json=body)
    assert again.status_code == 400, again.text
    assert again.json()["error_code"] == "1013"
    assert again.json()["error_data"] == {"id": first["id"], "state": "Queued"}
    assert await balance(held, merchant.test_token) == before


async def test_short_credits_are_1016_and_hold_nothing(client: AppClient) -> None:
    poor = await new_merchant(client.gateway.db, test_rupees=99)
    response = await client.post(USE, json=request(poor.test_token))
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "1016"
    assert await balance(client, poor.test_token) == 99


async def test_the_outcome_is_called_back(client: AppClient) -> None:
    async with receiving() as receiver:
        merchant = await merchants.create(
            client.gateway.db,
            "single-step merchant",
            key=KEY,
            callback_url=receiver.url,
            test_credits_paisa=100_000,
        )
        body = request(merchant.test_token)
        queued = await use(client, body)
        stop = asyncio.Event()
        deliverer = asyncio.create_task(delivery.run(client.gateway, stop))
        try:

            async def called_back() -> bool:
                return bool(receiver.received)

            await eventually(called_back, timeout_s=15)
        finally:
            stop.set()
            await deliverer
        fields = receiver.received[0].fields()
        assert fields["status"] == "Success", fields
        assert fields["reference"] == body["reference"]
        assert fields["response_id"] == str(queued["id"])
        assert fields["amount"] == "100.00"


# LIVE: the service's ISP over the ISP protocol, served by isp-sim.


@pytest_asyncio.fixture
async def live_isp(held: AppClient) -> AsyncIterator[isp_sim.IspSimulator]:
    async with serving_isp_sim(held, EASTLINK.slug) as simulator:
        yield simulator


async def test_a_live_payment_is_queued_then_reaches_the_isp_once(
    held: AppClient, live_isp: isp_sim.IspSimulator
) -> None:
    merchant = await new_merchant(held.gateway.db, live_rupees=1000)
    body = request(merchant.live_token, amount=250)
    queued = await use(held, body)
    assert live_isp.applied().body == {"payments": []}, "queued, not sent"
    assert await state_of(held, merchant.live_token, body["reference"]) == "Queued"
    assert await reconcile.run_once(held.gateway) >= 1
    assert await state_of(held, merchant.live_token, body["reference"]) == "Success"
    applied = live_isp.applied().body
    assert isinstance(applied, dict)
    assert [(p["payment_id"], p["amount_paisa"]) for p in applied["payments"]] == [
        (queued["id"], 25_000)
    ]
    assert await balance(held, merchant.live_token) == 750
    await assert_books_balance(held.gateway.db)
