"""The platform look-ups of spec/API.md section 5: a payment's status, many statuses at
once, and the balance; their fields and JSON types, and how they follow payments."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bhuktani.api.app import create_app
from bhuktani.ledger import accounts as ledger
from bhuktani.merchants.service import NewMerchant
from tests.conftest import AppClient
from tests.support import assert_books_balance, fast_settings, new_merchant

DETAILS = "/api/servicegroup/details/hashcnet-v2/"
COMMIT = "/api/servicegroup/commit/hashcnet-v2/"
ARROWNET_COMMIT = "/api/servicegroup/commit/arrownet/"
STATUS = "/api/service/status/"
BULK_STATUS = "/api/service/bulk/status/"
STATUS_FIELDS = {
    "status",
    "state",
    "original_status",
    "details",
    "reference",
    "response_id",
    "amount",
    "refunded",
    "refunded_amount",
    "refunds",
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def app_client(db_url: str, **overrides: Any) -> AsyncIterator[AppClient]:
    app = create_app(fast_settings(db_url, **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AppClient(transport=transport, base_url="http://gateway") as http:
            http.gateway = app.state.gateway
            yield http


async def pay(
    client: AppClient,
    token: str,
    reference: str,
    *,
    username: str = "jeetenaug4",
    duration_code: str = "1",
    amount: Any = 999,
) -> httpx.Response:
    details = {
        "token": token,
        "reference": unique("d"),
        "username": username,
        "service_slug": "vns",
    }
    found = await client.post(DETAILS, json=details)
    assert found.status_code == 200, found.text
    body = {
        "token": token,
        "reference": reference,
        "session_id": found.json()["session_id"],
        "package_code": 9,
        "duration_code": duration_code,
        "amount": amount,
    }
    return await client.post(COMMIT, json=body)


async def paid(client: AppClient, token: str, reference: str, **kwargs: Any) -> dict[str, Any]:
    response = await pay(client, token, reference, **kwargs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_refused(response: httpx.Response, code: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] is False and body["state"] == "Error"
    assert body["error_code"] == code, body
    return body


def assert_status_shape(body: dict[str, Any]) -> None:
    assert set(body) == STATUS_FIELDS, sorted(body)
    assert body["status"] is True
    assert isinstance(body["state"], str)
    # The ISP's outcome in the platform's words (docs/API.md section 5), never ours.
    assert body["original_status"] in {"Success", "Error", "Queued", "Processing"}
    assert isinstance(body["details"], str)
    assert isinstance(body["reference"], str)
    assert type(body["response_id"]) is int
    assert type(body["amount"]) is float
    assert type(body["refunded"]) is bool
    assert type(body["refunded_amount"]) is float
    assert isinstance(body["refunds"], list)


# Status of one payment.


async def test_status_by_query_parameters_has_every_field_and_type(
    client: AppClient, merchant: NewMerchant
) -> None:
    reference = unique("p")
    commit = await paid(client, merchant.test_token, reference)
    response = await client.get(
        STATUS, params={"token": merchant.test_token, "reference": reference}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_status_shape(body)
    assert body["state"] == "Success"
    assert body["reference"] == reference
    assert body["response_id"] == commit["id"]
    assert body["amount"] == 999.0
    assert body["refunded"] is False
    assert body["refunded_amount"] == 0.0
    assert body["refunds"] == []
    # The ISP's receipt, as the commit gave it, is in the details.
    assert commit["detail"] in body["details"]


async def test_status_by_json_body_on_get(client: AppClient, merchant: NewMerchant) -> None:
    reference = unique("p")
    commit = await paid(client, merchant.test_token, reference)
    response = await client.request(
        "GET", STATUS, json={"token": merchant.test_token, "reference": reference}
    )
    assert response.status_code == 200, response.text
    assert_status_shape(response.json())
    assert response.json()["response_id"] == commit["id"]


async def test_status_with_the_authorization_header(
    client: AppClient, merchant: NewMerchant
) -> None:
    reference = unique("p")
    commit = await paid(client, merchant.test_token, reference)
    response = await client.get(
        STATUS,
        params={"reference": reference},
        headers={"Authorization": f"Token {merchant.test_token}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["response_id"] == commit["id"]


async def test_status_json_body_wins_over_query_parameters(
    client: AppClient, merchant: NewMerchant
) -> None:
    first, second = unique("p"), unique("p")
    await paid(client, merchant.test_token, first)
    wanted = await paid(client, merchant.test_token, second)
    response = await client.request(
        "GET",
        STATUS,
        params={"token": merchant.test_token, "reference": first},
        json={"reference": second},
    )
    assert response.status_code == 200, response.text
    assert response.json()["response_id"] == wanted["id"]


async def test_status_of_an_arrownet_payment(client: AppClient, merchant: NewMerchant) -> None:
    reference = unique("a")
    body = {
        "token": merchant.test_token,
        "reference": reference,
        "username": "Pradhanang",
        "amount": "17628.00",
        "duration": 12,
    }
    commit = await client.post(ARROWNET_COMMIT, json=body)
    assert commit.status_code == 200, commit.text
    response = await client.get(
        STATUS, params={"token": merchant.test_token, "reference": reference}
    )
    assert response.status_code == 200, response.text
    assert_status_shape(response.json())
    assert response.json()["amount"] == 17628.0
    assert response.json()["response_id"] == commit.json()["id"]


async def test_status_of_a_refused_payment_is_failed(
    client: AppClient, merchant: NewMerchant
) -> None:
    reference = unique("p")
    refused = await pay(client, merchant.test_token, reference, username="refuse-user")
    assert_refused(refused, "1021")
    response = await client.get(
        STATUS, params={"token": merchant.test_token, "reference": reference}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_status_shape(body)
    assert body["state"] == "Failed"
    assert body["amount"] == 999.0
    await assert_books_balance(client.gateway.db)


async def test_status_of_a_payment_awaiting_the_isp_is_processing(db_url: str) -> None:
    # Without the reconciler the payment stays where the commit left it.
    async with app_client(db_url, reconciler_enabled=False) as client:
        merchant = await new_merchant(client.gateway.db)
        reference = unique("p")
        commit = await paid(client, merchant.test_token, reference, username="lost-user")
        assert commit["state"] == "Processing"
        response = await client.get(
            STATUS, params={"token": merchant.test_token, "reference": reference}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert_status_shape(body)
        assert body["state"] == "Processing"
        assert body["response_id"] == commit["id"]
        assert body["refunded"] is False
        await assert_books_balance(client.gateway.db)


async def test_status_lists_refunds_with_their_fields(
    client: AppClient, merchant: NewMerchant
) -> None:
    reference = unique("p")
    commit = await paid(
        client, merchant.test_token, reference, duration_code="custom_1", amount=13500
    )
    async with client.gateway.db.transaction() as tx:
        isp = await ledger.ensure_account(tx, "isp", "test", ledger.isp_code("vns", commit["id"]))
        account = await ledger.merchant_account(tx, merchant.merchant_id, "test")
        await ledger.refund(tx, isp, account, 50_050, commit["id"], "IPTV not delivered")
    response = await client.get(
        STATUS, params={"token": merchant.test_token, "reference": reference}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_status_shape(body)
    assert body["state"] == "Success"
    assert body["refunded"] is True
    assert body["refunded_amount"] == 500.5
    [refund] = body["refunds"]
    assert set(refund) == {"created_at", "remarks", "amount"}
    # A date, as lookup.md shows it: "2024-07-15".
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", refund["created_at"]), refund
    assert refund["remarks"] == "IPTV not delivered"
    assert type(refund["amount"]) is float and refund["amount"] == 500.5
    balance = await client.get("/api/balance", params={"token": merchant.test_token})
    assert balance.json() == {
        "credits_consumed": 13500.0 - 500.5,
        "credits_available": 1_000_000.0 - 13500.0 + 500.5,
    }
    await assert_books_balance(client.gateway.db)


async def test_status_with_an_over_long_reference_is_not_found(
    client: AppClient, merchant: NewMerchant
) -> None:
    params = {"token": merchant.test_token, "reference": "r" * 500}
    assert_refused(await client.get(STATUS, params=params), "002")


# Many statuses at once.


async def test_bulk_status_keeps_the_order_asked_and_marks_unknown_ones(
    client: AppClient, merchant: NewMerchant
) -> None:
    first, second, missing = unique("p"), unique("p"), unique("missing")
    one = await paid(client, merchant.test_token, first)
    two = await paid(client, merchant.test_token, second)
    references = [second, missing, first]
    response = await client.get(
        BULK_STATUS,
        params={
            "token": merchant.test_token,
            "references": ",".join(references),
            "reference_length": "3",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] is True
    assert body["message"] == "Success"
    assert [e["reference"] for e in body["detail"]] == references
    assert [e["state"] for e in body["detail"]] == ["Success", "Error", "Success"]
    assert body["detail"][0]["response_id"] == two["id"]
    assert body["detail"][2]["response_id"] == one["id"]
    assert body["detail"][0]["amount"] == 999.0
    # bulkservice.md's six fields for every entry, an unknown reference included.
    assert body["detail"][1] == {
        "status": True,
        "state": "Error",
        "details": "Invalid reference obtained for account",
        "reference": missing,
        "response_id": 0,
        "amount": 0,
    }
    for entry in body["detail"]:
        assert list(entry) == ["status", "state", "details", "reference", "response_id", "amount"]


async def test_bulk_status_by_json_body_and_header(
    client: AppClient, merchant: NewMerchant
) -> None:
    reference = unique("p")
    await paid(client, merchant.test_token, reference)
    response = await client.request(
        "GET",
        BULK_STATUS,
        json={"references": reference, "reference_length": 1},
        headers={"Authorization": f"Token {merchant.test_token}"},
    )
    assert response.status_code == 200, response.text
    assert [e["state"] for e in response.json()["detail"]] == ["Success"]


@pytest.mark.parametrize("length", ["2", "4", "0", "three", None])
async def test_bulk_status_reference_length_must_equal_the_count(
    client: AppClient, merchant: NewMerchant, length: str | None
) -> None:
    params = {"token": merchant.test_token, "references": "a-1,b-2,c-3"}
    if length is not None:
        params["reference_length"] = length
    error = assert_refused(await client.get(BULK_STATUS, params=params), "1010")
    assert list(error["error_data"]) == ["reference_length"]


async def test_bulk_status_takes_at_most_100_references(
    client: AppClient, merchant: NewMerchant
) -> None:
    hundred = [f"r-{i}" for i in range(100)]
    ok = await client.get(
        BULK_STATUS,
        params={
            "token": merchant.test_token,
            "references": ",".join(hundred),
            "reference_length": "100",
        },
    )
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["detail"]) == 100
    too_many = await client.get(
        BULK_STATUS,
        params={
            "token": merchant.test_token,
            "references": ",".join([*hundred, "r-100"]),
            "reference_length": "101",
        },
    )
    error = assert_refused(too_many, "1010")
    assert list(error["error_data"]) == ["references"]


@pytest.mark.parametrize("references", [None, ""])
async def test_bulk_status_without_references_is_1012(
    client: AppClient, merchant: NewMerchant, references: str | None
) -> None:
    params = {"token": merchant.test_token, "reference_length": "0"}
    if references is not None:
        params["references"] = references
    assert_refused(await client.get(BULK_STATUS, params=params), "1012")


# Balance.


@pytest.mark.parametrize("path", ["/api/balance", "/api/balance/"])
async def test_balance_with_and_without_trailing_slash(
    client: AppClient, merchant: NewMerchant, path: str
) -> None:
    response = await client.get(path, params={"token": merchant.test_token})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"credits_consumed": 0.0, "credits_available": 1_000_000.0}
    assert type(body["credits_consumed"]) is float
    assert type(body["credits_available"]) is float


async def test_balance_by_header_and_by_json_body(client: AppClient, merchant: NewMerchant) -> None:
    by_header = await client.get(
        "/api/balance", headers={"Authorization": f"Token {merchant.test_token}"}
    )
    by_body = await client.request("GET", "/api/balance/", json={"token": merchant.test_token})
    for response in (by_header, by_body):
        assert response.status_code == 200, response.text
        assert response.json()["credits_available"] == 1_000_000.0


@pytest.mark.parametrize(
    ("duration_code", "amount"), [("1", 999), ("custom_2", "1634.00"), ("12", 15750.0)]
)
async def test_balance_moves_by_exactly_the_amount_paid(
    client: AppClient, merchant: NewMerchant, duration_code: str, amount: Any
) -> None:
    before = (await client.get("/api/balance/", params={"token": merchant.test_token})).json()
    commit = await paid(
        client, merchant.test_token, unique("p"), duration_code=duration_code, amount=amount
    )
    after = (await client.get("/api/balance/", params={"token": merchant.test_token})).json()
    paid_rupees = float(amount)
    assert after["credits_available"] == before["credits_available"] - paid_rupees
    assert after["credits_consumed"] == before["credits_consumed"] + paid_rupees
    assert commit["credits_consumed"] == paid_rupees
    assert commit["credits_available"] == after["credits_available"]
    await assert_books_balance(client.gateway.db)


async def test_balance_unchanged_by_a_refused_payment(
    client: AppClient, merchant: NewMerchant
) -> None:
    assert_refused(
        await pay(client, merchant.test_token, unique("p"), username="refuse-user"), "1021"
    )
    response = await client.get("/api/balance", params={"token": merchant.test_token})
    assert response.json() == {"credits_consumed": 0.0, "credits_available": 1_000_000.0}
    await assert_books_balance(client.gateway.db)
