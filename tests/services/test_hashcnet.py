"""HashCNet V1 (khalti-docs/Internet/hashcnet/v1.md), over the API on both databases: the
document's examples field by field and JSON type by JSON type (tests/services/fixtures/
hashcnet.json: the document's JSON, its amounts those of the test user, decision H1), each
refusal charging nothing, and the LIVE path against isp-sim."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bhuktani.merchants.service import NewMerchant
from bhuktani.sandbox import isp_sim
from bhuktani.services import hashcnet, hashcnet_v2
from bhuktani.services.hashcnet import GROUP
from tests.conftest import AppClient
from tests.services.support import (
    assert_refused,
    balance,
    body,
    same_shape,
    serving_isp_sim,
)
from tests.support import assert_books_balance, new_merchant

FIXTURES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "hashcnet.json").read_text()
)
DETAILS = "/api/servicegroup/details/hashcnet/"
COMMIT = "/api/servicegroup/commit/hashcnet/"
# Per call and clock-relative values: typed, not compared (decision G9).
PER_CALL = {"session_id", "id", "credits_available"}


async def session_of(client: AppClient, token: str, **fields: Any) -> int:
    response = await client.post(
        DETAILS, json=body(token, FIXTURES["details"]["request"], **fields)
    )
    assert response.status_code == 200, response.text
    session_id: int = response.json()["session_id"]
    return session_id


def test_the_examples_are_the_documents() -> None:
    assert GROUP.examples.details == FIXTURES["details"]["request"]
    assert GROUP.examples.commit == FIXTURES["commit"]["request"]


@pytest.mark.parametrize("isp", hashcnet.ISPS)
async def test_the_documented_details_answer_at_every_isp(
    client: AppClient, merchant: NewMerchant, isp: str
) -> None:
    request = body(merchant.test_token, FIXTURES["details"]["request"], service_slug=isp)
    response = await client.post(DETAILS, json=request)
    assert response.status_code == 200, response.text
    same_shape(response.json(), FIXTURES["details"]["answer"], typed_only=PER_CALL)


async def test_the_documented_payment_pays_the_total_and_spends_the_session(
    client: AppClient, merchant: NewMerchant
) -> None:
    before = await balance(client, merchant.test_token)
    session_id = await session_of(client, merchant.test_token)
    request = body(merchant.test_token, FIXTURES["commit"]["request"], session_id=session_id)
    response = await client.post(COMMIT, json=request)
    assert response.status_code == 200, response.text
    same_shape(response.json(), FIXTURES["commit"]["answer"], typed_only=PER_CALL)
    assert await balance(client, merchant.test_token) == before - 10.0
    # A payment spends its session (G10): the same session again, a new reference: 4000.
    again = body(merchant.test_token, FIXTURES["commit"]["request"], session_id=session_id)
    assert_refused(await client.post(COMMIT, json=again), "4000")
    assert await balance(client, merchant.test_token) == before - 10.0
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"amount": 11.0}, "1010", "amount"),
        ({"amount": "1150.00"}, "1010", "amount"),
        ({"package_name": "FOC users / 12M"}, "1010", "package_name"),
        ({"session_id": 123456789}, "4000", None),
        ({"reference": ""}, "1012", None),
    ],
)
async def test_a_refused_commit_charges_nothing(
    client: AppClient, merchant: NewMerchant, fields: dict[str, Any], code: str, field: str | None
) -> None:
    before = await balance(client, merchant.test_token)
    session_id = await session_of(client, merchant.test_token)
    request = body(merchant.test_token, FIXTURES["commit"]["request"], session_id=session_id)
    request.update(fields)
    assert_refused(await client.post(COMMIT, json=request), code, field)
    assert await balance(client, merchant.test_token) == before
    await assert_books_balance(client.gateway.db)


async def test_a_duplicate_reference_is_1013_on_a_fresh_session(
    client: AppClient, merchant: NewMerchant
) -> None:
    first = body(
        merchant.test_token,
        FIXTURES["commit"]["request"],
        session_id=await session_of(client, merchant.test_token),
    )
    paid = await client.post(COMMIT, json=first)
    assert paid.status_code == 200, paid.text
    before = await balance(client, merchant.test_token)
    again = dict(first, session_id=await session_of(client, merchant.test_token))
    response = await client.post(COMMIT, json=again)
    assert_refused(response, "1013")
    assert response.json()["error_data"] == {"id": paid.json()["id"], "state": "Success"}
    assert await balance(client, merchant.test_token) == before


async def test_an_unknown_user_is_4000(client: AppClient, merchant: NewMerchant) -> None:
    request = body(merchant.test_token, FIXTURES["details"]["request"], username="nobody-here")
    assert_refused(await client.post(DETAILS, json=request), "4000")


async def test_slugs_of_hashcnet_v2_are_not_served_here_nor_the_reverse(
    client: AppClient, merchant: NewMerchant
) -> None:
    """Decision G11: an unknown service_slug is 1010; each version serves its own ISPs."""
    for slug in ("vns", "no-such-isp"):
        request = body(merchant.test_token, FIXTURES["details"]["request"], service_slug=slug)
        assert_refused(await client.post(DETAILS, json=request), "1010", "service_slug")
    v2 = {"username": "jeetenaug4", "service_slug": "lnt-infotech"}
    response = await client.post(
        f"/api/servicegroup/details/{hashcnet_v2.SLUG}/", json=body(merchant.test_token, v2)
    )
    assert_refused(response, "1010", "service_slug")


async def test_the_refuse_user_is_1021_and_charged_nothing(
    client: AppClient, merchant: NewMerchant
) -> None:
    before = await balance(client, merchant.test_token)
    session_id = await session_of(client, merchant.test_token, username="refuse-user")
    request = body(merchant.test_token, FIXTURES["commit"]["request"], session_id=session_id)
    assert_refused(await client.post(COMMIT, json=request), "1021")
    assert await balance(client, merchant.test_token) == before
    await assert_books_balance(client.gateway.db)


# LIVE: the group's ISP system over the ISP protocol, served by isp-sim.


@pytest_asyncio.fixture
async def live_isp(client: AppClient) -> AsyncIterator[isp_sim.IspSimulator]:
    async with serving_isp_sim(client, hashcnet.SLUG) as simulator:
        yield simulator


async def test_a_live_payment_reaches_the_isp_once(
    client: AppClient, live_isp: isp_sim.IspSimulator
) -> None:
    merchant = await new_merchant(client.gateway.db, live_rupees=100)
    token = merchant.live_token
    session_id = await session_of(client, token, service_slug="nepalink")
    request = body(token, FIXTURES["commit"]["request"], session_id=session_id)
    response = await client.post(COMMIT, json=request)
    assert response.status_code == 200, response.text
    same_shape(response.json(), FIXTURES["commit"]["answer"], typed_only=PER_CALL)
    applied = live_isp.applied().body
    assert isinstance(applied, dict)
    mine = [p for p in applied["payments"] if p["payment_id"] == response.json()["id"]]
    assert mine == [
        {
            "payment_id": response.json()["id"],
            "group": hashcnet.SLUG,
            "isp": "nepalink",
            "username": "pnt_test",
            "amount_paisa": 1000,
            "receipt": mine[0]["receipt"],
        }
    ]
    assert await balance(client, token) == 90.0
    await assert_books_balance(client.gateway.db)
