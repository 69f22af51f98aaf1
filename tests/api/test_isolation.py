"""Merchants and environments never see each other (spec/API.md sections 1, 5 and 6): a
session id, a reference or a transaction id of another merchant or of the other
environment gives nothing, and moves no money."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from bhuktani.merchants.service import NewMerchant
from tests.conftest import AppClient
from tests.support import assert_books_balance, new_merchant

DETAILS = "/api/servicegroup/details/hashcnet-v2/"
COMMIT = "/api/servicegroup/commit/hashcnet-v2/"
ARROWNET_COMMIT = "/api/servicegroup/commit/arrownet/"
STATUS = "/api/service/status/"
BULK_STATUS = "/api/service/bulk/status/"
BALANCE = "/api/balance/"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def session_of(client: AppClient, token: str) -> int:
    body = {
        "token": token,
        "reference": unique("d"),
        "username": "jeetenaug4",
        "service_slug": "vns",
    }
    response = await client.post(DETAILS, json=body)
    assert response.status_code == 200, response.text
    session_id: int = response.json()["session_id"]
    return session_id


async def commit(
    client: AppClient, token: str, session_id: int, reference: str | None = None
) -> httpx.Response:
    body = {
        "token": token,
        "reference": reference or unique("p"),
        "session_id": session_id,
        "package_code": 9,
        "duration_code": "1",
        "amount": 999,
    }
    return await client.post(COMMIT, json=body)


async def pay(client: AppClient, token: str, reference: str | None = None) -> dict[str, Any]:
    response = await commit(client, token, await session_of(client, token), reference)
    assert response.status_code == 200, response.text
    paid: dict[str, Any] = response.json()
    return paid


async def balance(client: AppClient, token: str) -> dict[str, Any]:
    response = await client.get(BALANCE, params={"token": token})
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def status(client: AppClient, token: str, reference: str) -> httpx.Response:
    return await client.get(STATUS, params={"token": token, "reference": reference})


async def payments(client: AppClient, merchant_id: int, env: str) -> int:
    async with client.gateway.db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT COUNT(*) AS n FROM payments WHERE merchant_id = $1 AND env = $2",
            merchant_id,
            env,
        )
    assert row is not None
    return int(row["n"])


def assert_refused(response: httpx.Response, code: str, details: str | None = None) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] is False and body["state"] == "Error"
    assert body["error_code"] == code, body
    if details is not None:
        assert body["details"] == details


# Between merchants.


async def test_another_merchants_session_pays_nothing_and_stays_theirs(
    client: AppClient, merchant: NewMerchant
) -> None:
    other = await new_merchant(client.gateway.db)
    theirs = await session_of(client, other.test_token)
    response = await commit(client, merchant.test_token, theirs)
    assert_refused(response, "4000", "Invalid session")
    assert await balance(client, merchant.test_token) == {
        "credits_consumed": 0.0,
        "credits_available": 1_000_000.0,
    }
    assert await payments(client, merchant.merchant_id, "test") == 0
    # The owner still pays with it.
    assert (await commit(client, other.test_token, theirs)).status_code == 200
    await assert_books_balance(client.gateway.db)


async def test_another_merchants_reference_is_not_found(
    client: AppClient, merchant: NewMerchant
) -> None:
    other = await new_merchant(client.gateway.db)
    reference = unique("theirs")
    await pay(client, other.test_token, reference)
    response = await status(client, merchant.test_token, reference)
    assert_refused(response, "002")
    assert response.json()["message"] == "The reference sent is not a valid reference."
    bulk = await client.get(
        BULK_STATUS,
        params={"token": merchant.test_token, "references": reference, "reference_length": 1},
    )
    assert bulk.status_code == 200, bulk.text
    [entry] = bulk.json()["detail"]
    assert entry["state"] == "Error"
    # As bulkservice.md shows an unknown reference: nothing of the other merchant's payment.
    assert (entry["response_id"], entry["amount"]) == (0, 0)
    await assert_books_balance(client.gateway.db)


async def test_another_merchants_transaction_id_gives_nothing(
    client: AppClient, merchant: NewMerchant
) -> None:
    other = await new_merchant(client.gateway.db)
    reference = unique("theirs")
    theirs = await pay(client, other.test_token, reference)
    payment_id = theirs["id"]
    for params in (
        {"reference": str(payment_id)},
        {"reference": str(payment_id), "id": payment_id, "response_id": payment_id},
        {"response_id": str(payment_id)},
    ):
        response = await client.get(STATUS, params={"token": merchant.test_token} | params)
        assert response.status_code == 400, response.text
        assert str(payment_id) not in response.text
        assert reference not in response.text


async def test_the_same_reference_is_free_for_another_merchant(
    client: AppClient, merchant: NewMerchant
) -> None:
    other = await new_merchant(client.gateway.db)
    reference = unique("shared")
    theirs = await pay(client, other.test_token, reference)
    # Not 1013: a duplicate refusal would hand over the other merchant's payment id.
    mine = await pay(client, merchant.test_token, reference)
    assert mine["id"] != theirs["id"]
    mine_status = (await status(client, merchant.test_token, reference)).json()
    theirs_status = (await status(client, other.test_token, reference)).json()
    assert mine_status["response_id"] == mine["id"]
    assert theirs_status["response_id"] == theirs["id"]
    await assert_books_balance(client.gateway.db)


async def test_one_merchants_payment_leaves_anothers_balance(
    client: AppClient, merchant: NewMerchant
) -> None:
    other = await new_merchant(client.gateway.db, test_rupees=500)
    await pay(client, merchant.test_token)
    assert await balance(client, other.test_token) == {
        "credits_consumed": 0.0,
        "credits_available": 500.0,
    }
    await assert_books_balance(client.gateway.db)


# Between TEST and LIVE.


async def test_live_balance_is_apart_from_test_balance(
    client: AppClient, merchant: NewMerchant
) -> None:
    assert await balance(client, merchant.test_token) == {
        "credits_consumed": 0.0,
        "credits_available": 1_000_000.0,
    }
    assert await balance(client, merchant.live_token) == {
        "credits_consumed": 0.0,
        "credits_available": 0.0,
    }
    await pay(client, merchant.test_token)
    assert await balance(client, merchant.live_token) == {
        "credits_consumed": 0.0,
        "credits_available": 0.0,
    }
    assert await balance(client, merchant.test_token) == {
        "credits_consumed": 999.0,
        "credits_available": 1_000_000.0 - 999.0,
    }
    await assert_books_balance(client.gateway.db)


async def test_live_credits_are_not_test_credits(client: AppClient) -> None:
    merchant = await new_merchant(client.gateway.db, test_rupees=10, live_rupees=2500)
    assert (await balance(client, merchant.live_token))["credits_available"] == 2500.0
    assert (await balance(client, merchant.test_token))["credits_available"] == 10.0
    # LIVE money does not pay for a TEST payment.
    session_id = await session_of(client, merchant.test_token)
    assert_refused(await commit(client, merchant.test_token, session_id), "1016")
    await assert_books_balance(client.gateway.db)


async def test_live_does_not_see_test_references(client: AppClient, merchant: NewMerchant) -> None:
    reference = unique("p")
    await pay(client, merchant.test_token, reference)
    assert (await status(client, merchant.test_token, reference)).status_code == 200
    assert_refused(await status(client, merchant.live_token, reference), "002")
    bulk = await client.get(
        BULK_STATUS,
        params={"token": merchant.live_token, "references": reference, "reference_length": 1},
    )
    assert bulk.status_code == 200, bulk.text
    assert [e["state"] for e in bulk.json()["detail"]] == ["Error"]
    await assert_books_balance(client.gateway.db)


async def test_live_does_not_see_test_sessions(client: AppClient, merchant: NewMerchant) -> None:
    session_id = await session_of(client, merchant.test_token)
    response = await commit(client, merchant.live_token, session_id)
    assert_refused(response, "4000", "Invalid session")
    assert await payments(client, merchant.merchant_id, "live") == 0
    assert await payments(client, merchant.merchant_id, "test") == 0


async def test_test_reference_reused_in_live_is_not_a_duplicate(client: AppClient) -> None:
    merchant = await new_merchant(client.gateway.db, live_rupees=10_000)
    reference = unique("a")
    body = {
        "reference": reference,
        "username": "Pradhanang",
        "amount": "1695.00",
        "duration": 1,
    }
    paid = await client.post(ARROWNET_COMMIT, json=body | {"token": merchant.test_token})
    assert paid.status_code == 200, paid.text
    # LIVE has no ISP configured here: 1018, never 1013, and nothing stored in LIVE.
    live = await client.post(ARROWNET_COMMIT, json=body | {"token": merchant.live_token})
    assert_refused(live, "1018")
    assert await payments(client, merchant.merchant_id, "live") == 0
    assert await payments(client, merchant.merchant_id, "test") == 1
    assert (await balance(client, merchant.live_token))["credits_available"] == 10_000.0
    await assert_books_balance(client.gateway.db)
