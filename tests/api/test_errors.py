"""Every error code of spec/API.md section 2 that the endpoints can reach: the HTTP status
of section 2.1 and the whole envelope, with the fixed message of the table."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bhuktani.api.app import create_app
from bhuktani.merchants import service
from bhuktani.merchants.service import NewMerchant
from bhuktani.payments import commit as commit_flow
from bhuktani.payments import details as details_flow
from tests.conftest import AppClient
from tests.support import assert_books_balance, fast_settings, new_merchant

HASHCNET_DETAILS = "/api/servicegroup/details/hashcnet-v2/"
HASHCNET_COMMIT = "/api/servicegroup/commit/hashcnet-v2/"
ARROWNET_DETAILS = "/api/servicegroup/details/arrownet/"
ARROWNET_COMMIT = "/api/servicegroup/commit/arrownet/"
STATUS = "/api/service/status/"
BULK_STATUS = "/api/service/bulk/status/"
BALANCE = "/api/balance/"

# The table of section 2, copied rather than imported: the test checks the code's table.
MESSAGES = {
    "1001": "Token not provided",
    "1002": "Invalid token",
    "1003": "Deleted token is provided",
    "1004": "Inactive token is provided",
    "1005": "Account associated with token is deleted",
    "1006": "Account associated with the token is inactive",
    "1007": "Account has expired",
    "1008": "Problem using the service",
    "1009": "Account doesn't have the permission",
    "1010": "Validation error",
    "1011": "Validation error",
    "1012": "Reference id not provided",
    "1013": "Request with duplicate reference id obtained",
    "1014": "Parse error",
    "1015": "Parse error",
    "1016": "Insufficient user credits",
    "1017": "Server error",
    "1018": "Error while using service",
    "1019": "Service in maintenance mode",
    "1020": "ERC for the amount could not be obtained",
    "1021": "Error from Provider",
    "1022": "Too many requests",
    "4000": "Can't fulfill request",
    "002": "The reference sent is not a valid reference.",
}
# The `error` names the documents fix; the others are only required to be strings.
ERRORS = {
    "1002": "token_not_found",
    "1010": "validation_error",
    "1022": "rate_limited",
    "4000": "client_error",
    "002": "invalid_reference",
}
ENVELOPE_KEYS = {"status", "state", "error_code", "error", "message", "details", "error_data"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def assert_envelope(response: httpx.Response, http_status: int, code: str) -> dict[str, Any]:
    assert response.status_code == http_status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == ENVELOPE_KEYS, body
    assert body["status"] is False
    assert body["state"] == "Error"
    assert isinstance(body["error_code"], str)
    assert body["error_code"] == code, body
    assert body["message"] == MESSAGES[code]
    assert isinstance(body["error"], str) and body["error"]
    if code in ERRORS:
        assert body["error"] == ERRORS[code]
    assert isinstance(body["details"], str) and body["details"]
    assert isinstance(body["error_data"], dict)
    if code not in ("1010", "1011", "1013"):
        assert body["error_data"] == {}
    return body


def hashcnet_details_body(token: str | None, username: str = "jeetenaug4") -> dict[str, Any]:
    body: dict[str, Any] = {
        "reference": unique("d"),
        "username": username,
        "service_slug": "vns",
    }
    if token is not None:
        body["token"] = token
    return body


async def session_of(client: AppClient, token: str, username: str = "jeetenaug4") -> int:
    response = await client.post(HASHCNET_DETAILS, json=hashcnet_details_body(token, username))
    assert response.status_code == 200, response.text
    session_id: int = response.json()["session_id"]
    return session_id


def hashcnet_commit_body(
    token: str, session_id: int, reference: str | None = None, **fields: Any
) -> dict[str, Any]:
    return {
        "token": token,
        "reference": reference or unique("p"),
        "session_id": session_id,
        "package_code": 9,
        "duration_code": "1",
        "amount": 999,
    } | fields


def arrownet_commit_body(token: str, **fields: Any) -> dict[str, Any]:
    return {
        "token": token,
        "reference": unique("a"),
        "username": "Pradhanang",
        "amount": "1695.00",
        "duration": 1,
    } | fields


async def available(client: AppClient, token: str) -> float:
    response = await client.get(BALANCE, params={"token": token})
    assert response.status_code == 200, response.text
    credits: float = response.json()["credits_available"]
    return credits


async def payment_count(client: AppClient, merchant_id: int) -> int:
    async with client.gateway.db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT COUNT(*) AS n FROM payments WHERE merchant_id = $1", merchant_id
        )
    assert row is not None
    return int(row["n"])


# Every endpoint, called with its fields and a given token (None: no token at all).
async def call(client: AppClient, endpoint: str, token: str | None) -> httpx.Response:
    if endpoint == HASHCNET_DETAILS:
        body = hashcnet_details_body("")
    elif endpoint == HASHCNET_COMMIT:
        body = hashcnet_commit_body("", 6466)
    elif endpoint == ARROWNET_DETAILS:
        body = {"username": "Pradhanang"}
    elif endpoint == ARROWNET_COMMIT:
        body = arrownet_commit_body("")
    elif endpoint == STATUS:
        body = {"reference": "r-1"}
    elif endpoint == BULK_STATUS:
        body = {"references": "r-1", "reference_length": "1"}
    else:
        assert endpoint == BALANCE
        body = {}
    body.pop("token", None)
    if token is not None:
        body["token"] = token
    if endpoint in (STATUS, BULK_STATUS, BALANCE):
        return await client.get(endpoint, params=body)
    return await client.post(endpoint, json=body)


ENDPOINTS = [
    HASHCNET_DETAILS,
    HASHCNET_COMMIT,
    ARROWNET_DETAILS,
    ARROWNET_COMMIT,
    STATUS,
    BULK_STATUS,
    BALANCE,
]


# Tokens and accounts: 1001 to 1007.


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_1001_no_token(client: AppClient, endpoint: str) -> None:
    assert_envelope(await call(client, endpoint, None), 400, "1001")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_1001_empty_token(client: AppClient, endpoint: str) -> None:
    assert_envelope(await call(client, endpoint, ""), 400, "1001")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_1002_unknown_token(client: AppClient, endpoint: str) -> None:
    token = "TEST:" + uuid.uuid4().hex[:20]
    assert_envelope(await call(client, endpoint, token), 400, "1002")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_1022_past_the_merchants_rate_limit_on_every_call(
    client: AppClient, merchant: NewMerchant, endpoint: str
) -> None:
    """Every merchant call counts (section 2.1: 429, with Retry-After in whole seconds)."""
    await service.set_rate_limit(client.gateway.db, merchant.merchant_id, 1, 2)
    for _ in range(2):
        assert (await call(client, BALANCE, merchant.test_token)).status_code == 200
    response = await call(client, endpoint, merchant.test_token)
    assert_envelope(response, 429, "1022")
    assert response.headers["retry-after"] == "1"


async def test_1022_past_an_addresss_failed_authentications(client: AppClient) -> None:
    budget = client.gateway.settings.auth_fail_burst
    for _ in range(budget):
        assert_envelope(await call(client, BALANCE, "TEST:" + uuid.uuid4().hex[:20]), 400, "1002")
    response = await call(client, BALANCE, "TEST:" + uuid.uuid4().hex[:20])
    assert_envelope(response, 429, "1022")
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("token", ["TEST:" + "x" * 5000, "y" * 5000])
async def test_1002_over_long_token(client: AppClient, token: str) -> None:
    assert_envelope(await call(client, HASHCNET_DETAILS, token), 400, "1002")


async def test_1002_token_that_is_not_a_string(client: AppClient) -> None:
    body = hashcnet_details_body(None) | {"token": 12345}
    assert_envelope(await client.post(HASHCNET_DETAILS, json=body), 400, "1002")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_1003_revoked_token(client: AppClient, merchant: NewMerchant, endpoint: str) -> None:
    key = client.gateway.token_key
    assert await service.revoke_token(client.gateway.db, merchant.test_token, key=key)
    assert_envelope(await call(client, endpoint, merchant.test_token), 400, "1003")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_1004_disabled_token(client: AppClient, merchant: NewMerchant, endpoint: str) -> None:
    async with client.gateway.db.transaction() as tx:
        changed = await tx.execute(
            "UPDATE tokens SET status = 'disabled' WHERE merchant_id = $1 AND env = 'test'",
            merchant.merchant_id,
        )
    assert changed == 1
    assert_envelope(await call(client, endpoint, merchant.test_token), 400, "1004")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_1005_deleted_account(
    client: AppClient, merchant: NewMerchant, endpoint: str
) -> None:
    assert await service.set_status(client.gateway.db, merchant.merchant_id, "deleted")
    assert_envelope(await call(client, endpoint, merchant.test_token), 400, "1005")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_1006_inactive_account(
    client: AppClient, merchant: NewMerchant, endpoint: str
) -> None:
    assert await service.set_status(client.gateway.db, merchant.merchant_id, "disabled")
    assert_envelope(await call(client, endpoint, merchant.test_token), 400, "1006")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_1007_expired_account(
    client: AppClient, merchant: NewMerchant, endpoint: str
) -> None:
    past_ms = int(time.time() * 1000) - 60_000
    async with client.gateway.db.transaction() as tx:
        await tx.execute(
            "UPDATE merchants SET expires_ms = $2 WHERE id = $1", merchant.merchant_id, past_ms
        )
    assert_envelope(await call(client, endpoint, merchant.test_token), 400, "1007")


async def test_account_with_a_future_expiry_still_works(
    client: AppClient, merchant: NewMerchant
) -> None:
    future_ms = int(time.time() * 1000) + 3_600_000
    async with client.gateway.db.transaction() as tx:
        await tx.execute(
            "UPDATE merchants SET expires_ms = $2 WHERE id = $1", merchant.merchant_id, future_ms
        )
    response = await call(client, HASHCNET_DETAILS, merchant.test_token)
    assert response.status_code == 200, response.text


# Services: 1008, 1018, 1019.


async def test_1008_service_group_not_enabled_for_the_merchant(client: AppClient) -> None:
    merchant = await new_merchant(client.gateway.db, services="arrownet")
    response = await client.post(HASHCNET_DETAILS, json=hashcnet_details_body(merchant.test_token))
    assert_envelope(response, 400, "1008")
    # The service it has is served.
    body = {"token": merchant.test_token, "username": "Pradhanang"}
    assert (await client.post(ARROWNET_DETAILS, json=body)).status_code == 200


async def test_1008_isp_not_enabled_when_the_merchant_names_one_isp(client: AppClient) -> None:
    merchant = await new_merchant(client.gateway.db, services="vns")
    ok = await client.post(HASHCNET_DETAILS, json=hashcnet_details_body(merchant.test_token))
    assert ok.status_code == 200, ok.text
    other = hashcnet_details_body(merchant.test_token) | {"service_slug": "techminds"}
    assert_envelope(await client.post(HASHCNET_DETAILS, json=other), 400, "1008")
    arrownet = {"token": merchant.test_token, "username": "Pradhanang"}
    assert_envelope(await client.post(ARROWNET_DETAILS, json=arrownet), 400, "1008")
    commit = await client.post(ARROWNET_COMMIT, json=arrownet_commit_body(merchant.test_token))
    assert_envelope(commit, 400, "1008")
    assert await payment_count(client, merchant.merchant_id) == 0


async def test_1008_on_commit_when_the_service_was_withdrawn_after_details(
    client: AppClient, merchant: NewMerchant
) -> None:
    session_id = await session_of(client, merchant.test_token)
    async with client.gateway.db.transaction() as tx:
        await tx.execute(
            "UPDATE merchants SET services = 'arrownet' WHERE id = $1", merchant.merchant_id
        )
    response = await client.post(
        HASHCNET_COMMIT, json=hashcnet_commit_body(merchant.test_token, session_id)
    )
    assert_envelope(response, 400, "1008")
    assert await available(client, merchant.test_token) == 1_000_000.0
    assert await payment_count(client, merchant.merchant_id) == 0


async def test_1018_live_token_while_no_live_isp_is_configured(
    client: AppClient, merchant: NewMerchant
) -> None:
    response = await client.post(HASHCNET_DETAILS, json=hashcnet_details_body(merchant.live_token))
    assert_envelope(response, 400, "1018")
    body = {"token": merchant.live_token, "username": "Pradhanang"}
    assert_envelope(await client.post(ARROWNET_DETAILS, json=body), 400, "1018")
    commit = await client.post(ARROWNET_COMMIT, json=arrownet_commit_body(merchant.live_token))
    assert_envelope(commit, 400, "1018")
    assert await payment_count(client, merchant.merchant_id) == 0


@contextlib.asynccontextmanager
async def app_client(db_url: str, **overrides: Any) -> AsyncIterator[AppClient]:
    app = create_app(fast_settings(db_url, **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AppClient(transport=transport, base_url="http://gateway") as http:
            http.gateway = app.state.gateway
            yield http


async def test_1019_isp_in_maintenance(db_url: str) -> None:
    async with app_client(db_url, maintenance=["vns"]) as client:
        merchant = await new_merchant(client.gateway.db)
        response = await client.post(
            HASHCNET_DETAILS, json=hashcnet_details_body(merchant.test_token)
        )
        assert_envelope(response, 400, "1019")
        # Only that ISP is in maintenance.
        other = hashcnet_details_body(merchant.test_token) | {"service_slug": "techminds"}
        assert (await client.post(HASHCNET_DETAILS, json=other)).status_code == 200


async def test_1019_service_group_in_maintenance(db_url: str) -> None:
    async with app_client(db_url, maintenance=["arrownet"]) as client:
        merchant = await new_merchant(client.gateway.db)
        body = {"token": merchant.test_token, "username": "Pradhanang"}
        assert_envelope(await client.post(ARROWNET_DETAILS, json=body), 400, "1019")
        commit = await client.post(ARROWNET_COMMIT, json=arrownet_commit_body(merchant.test_token))
        assert_envelope(commit, 400, "1019")
        assert await payment_count(client, merchant.merchant_id) == 0


async def test_1019_commit_with_a_session_opened_before_maintenance(
    client: AppClient, merchant: NewMerchant, db_url: str
) -> None:
    session_id = await session_of(client, merchant.test_token)
    async with app_client(db_url, maintenance=["vns"]) as maintained:
        response = await maintained.post(
            HASHCNET_COMMIT, json=hashcnet_commit_body(merchant.test_token, session_id)
        )
        assert_envelope(response, 400, "1019")
    assert await available(client, merchant.test_token) == 1_000_000.0
    assert await payment_count(client, merchant.merchant_id) == 0


# Validation: 1010.


@pytest.mark.parametrize(
    ("endpoint", "body", "fields"),
    [
        (HASHCNET_DETAILS, {"reference": "r-1"}, {"username", "service_slug"}),
        (HASHCNET_DETAILS, {"reference": "r-1", "service_slug": "vns"}, {"username"}),
        (
            HASHCNET_COMMIT,
            {"reference": "r-1"},
            {"session_id", "package_code", "duration_code", "amount"},
        ),
        (ARROWNET_DETAILS, {}, {"username"}),
        (ARROWNET_COMMIT, {"reference": "r-1"}, {"username", "amount", "duration"}),
    ],
    ids=[
        "hashcnet-details",
        "hashcnet-details-username",
        "hashcnet-commit",
        "arrownet-details",
        "arrownet-commit",
    ],
)
async def test_1010_missing_fields_each_named_in_error_data(
    client: AppClient,
    merchant: NewMerchant,
    endpoint: str,
    body: dict[str, Any],
    fields: set[str],
) -> None:
    response = await client.post(endpoint, json=body | {"token": merchant.test_token})
    error = assert_envelope(response, 400, "1010")
    assert set(error["error_data"]) == fields
    for messages in error["error_data"].values():
        assert isinstance(messages, list) and messages
        assert all(isinstance(m, str) and m for m in messages)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"amount": "abc"}, "amount"),
        ({"amount": "999.001"}, "amount"),
        ({"amount": 999.001}, "amount"),
        ({"amount": -999}, "amount"),
        ({"amount": "-999.00"}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": None}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": "Infinity"}, "amount"),
        ({"amount": "1e400"}, "amount"),
        ({"amount": [999]}, "amount"),
        ({"session_id": "abc"}, "session_id"),
        ({"session_id": "12ab"}, "session_id"),
        ({"session_id": 12.5}, "session_id"),
        ({"session_id": -1}, "session_id"),
        ({"package_code": "gold"}, "package_code"),
        ({"duration_code": ""}, "duration_code"),
        ({"reference": "has space"}, "reference"),
        ({"reference": "r" * 51}, "reference"),
    ],
)
async def test_1010_malformed_hashcnet_commit_field(
    client: AppClient, merchant: NewMerchant, fields: dict[str, Any], field: str
) -> None:
    session_id = await session_of(client, merchant.test_token)
    body = hashcnet_commit_body(merchant.test_token, session_id) | fields
    error = assert_envelope(await client.post(HASHCNET_COMMIT, json=body), 400, "1010")
    assert list(error["error_data"]) == [field]
    assert await available(client, merchant.test_token) == 1_000_000.0
    assert await payment_count(client, merchant.merchant_id) == 0


async def test_1010_unknown_service_slug(client: AppClient, merchant: NewMerchant) -> None:
    body = hashcnet_details_body(merchant.test_token) | {"service_slug": "no-such-isp"}
    error = assert_envelope(await client.post(HASHCNET_DETAILS, json=body), 400, "1010")
    assert list(error["error_data"]) == ["service_slug"]


async def test_1010_amount_that_does_not_match_the_price(
    client: AppClient, merchant: NewMerchant
) -> None:
    session_id = await session_of(client, merchant.test_token)
    # TESTING (code 71) is the one package of its code: one price, 2.00.
    body = hashcnet_commit_body(merchant.test_token, session_id, package_code=71, amount=3)
    error = assert_envelope(await client.post(HASHCNET_COMMIT, json=body), 400, "1010")
    assert error["error_data"] == {"amount": ["Amount 3.00 does not match the plan price 2.00"]}
    assert await available(client, merchant.test_token) == 1_000_000.0
    assert await payment_count(client, merchant.merchant_id) == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"package_code": 72}, "package_code"),
        ({"duration_code": "2"}, "duration_code"),
        ({"package_code": 71, "duration_code": "3"}, "duration_code"),
    ],
)
async def test_1010_package_or_duration_not_in_the_session(
    client: AppClient, merchant: NewMerchant, fields: dict[str, Any], field: str
) -> None:
    session_id = await session_of(client, merchant.test_token)
    body = hashcnet_commit_body(merchant.test_token, session_id) | fields
    error = assert_envelope(await client.post(HASHCNET_COMMIT, json=body), 400, "1010")
    assert list(error["error_data"]) == [field]
    assert await payment_count(client, merchant.merchant_id) == 0


@pytest.mark.parametrize("duration", [2, "2", 0, 24, "one"])
async def test_1010_arrownet_duration_outside_1_3_6_12(
    client: AppClient, merchant: NewMerchant, duration: Any
) -> None:
    body = arrownet_commit_body(merchant.test_token, duration=duration)
    error = assert_envelope(await client.post(ARROWNET_COMMIT, json=body), 400, "1010")
    assert list(error["error_data"]) == ["duration"]
    assert await payment_count(client, merchant.merchant_id) == 0


async def test_1010_arrownet_amount_mismatch(client: AppClient, merchant: NewMerchant) -> None:
    body = arrownet_commit_body(merchant.test_token, duration=3, amount=1695)
    error = assert_envelope(await client.post(ARROWNET_COMMIT, json=body), 400, "1010")
    assert error["error_data"] == {
        "amount": ["Amount 1695.00 does not match the plan price 5085.00"]
    }
    assert await available(client, merchant.test_token) == 1_000_000.0


# 1011: the sandbox's ISPs only refuse a field the gateway has already checked against the
# session (the prices never change), so an ISP-side field refusal cannot be reached here.


# References: 1012, 1013.


@pytest.mark.parametrize("reference", [None, "", "absent"])
async def test_1012_commit_without_reference(
    client: AppClient, merchant: NewMerchant, reference: str | None
) -> None:
    session_id = await session_of(client, merchant.test_token)
    hashcnet = hashcnet_commit_body(merchant.test_token, session_id) | {"reference": reference}
    arrownet = arrownet_commit_body(merchant.test_token) | {"reference": reference}
    if reference == "absent":
        del hashcnet["reference"], arrownet["reference"]
    assert_envelope(await client.post(HASHCNET_COMMIT, json=hashcnet), 400, "1012")
    assert_envelope(await client.post(ARROWNET_COMMIT, json=arrownet), 400, "1012")
    assert await payment_count(client, merchant.merchant_id) == 0


async def test_1012_hashcnet_details_without_reference(
    client: AppClient, merchant: NewMerchant
) -> None:
    body = hashcnet_details_body(merchant.test_token)
    del body["reference"]
    assert_envelope(await client.post(HASHCNET_DETAILS, json=body), 400, "1012")


async def test_1012_status_without_reference(client: AppClient, merchant: NewMerchant) -> None:
    response = await client.get(STATUS, params={"token": merchant.test_token})
    assert_envelope(response, 400, "1012")


async def test_arrownet_details_without_reference_is_served(
    client: AppClient, merchant: NewMerchant
) -> None:
    body = {"token": merchant.test_token, "username": "Pradhanang"}
    assert (await client.post(ARROWNET_DETAILS, json=body)).status_code == 200


async def test_1013_duplicate_reference_carries_the_first_payment(
    client: AppClient, merchant: NewMerchant
) -> None:
    reference = unique("p")
    first_session = await session_of(client, merchant.test_token)
    first = await client.post(
        HASHCNET_COMMIT, json=hashcnet_commit_body(merchant.test_token, first_session, reference)
    )
    assert first.status_code == 200, first.text
    second_session = await session_of(client, merchant.test_token)
    second = await client.post(
        HASHCNET_COMMIT, json=hashcnet_commit_body(merchant.test_token, second_session, reference)
    )
    error = assert_envelope(second, 400, "1013")
    assert error["error_data"] == {"id": first.json()["id"], "state": "Success"}
    assert await available(client, merchant.test_token) == 1_000_000.0 - 999.0
    assert await payment_count(client, merchant.merchant_id) == 1
    await assert_books_balance(client.gateway.db)


async def test_1013_reference_is_unique_across_services(
    client: AppClient, merchant: NewMerchant
) -> None:
    reference = unique("p")
    session_id = await session_of(client, merchant.test_token)
    first = await client.post(
        HASHCNET_COMMIT, json=hashcnet_commit_body(merchant.test_token, session_id, reference)
    )
    assert first.status_code == 200, first.text
    body = arrownet_commit_body(merchant.test_token, reference=reference)
    error = assert_envelope(await client.post(ARROWNET_COMMIT, json=body), 400, "1013")
    assert error["error_data"] == {"id": first.json()["id"], "state": "Success"}
    assert await payment_count(client, merchant.merchant_id) == 1
    await assert_books_balance(client.gateway.db)


async def test_1013_a_retried_commit_learns_the_outcome(
    client: AppClient, merchant: NewMerchant
) -> None:
    session_id = await session_of(client, merchant.test_token)
    request = hashcnet_commit_body(merchant.test_token, session_id)
    first = await client.post(HASHCNET_COMMIT, json=request)
    assert first.status_code == 200, first.text
    # The very same request again (its session is spent): the reference answers first.
    error = assert_envelope(await client.post(HASHCNET_COMMIT, json=request), 400, "1013")
    assert error["error_data"] == {"id": first.json()["id"], "state": "Success"}
    await assert_books_balance(client.gateway.db)


async def test_1013_reference_of_a_failed_payment_is_not_reused(
    client: AppClient, merchant: NewMerchant
) -> None:
    reference = unique("p")
    session_id = await session_of(client, merchant.test_token, "refuse-user")
    first = await client.post(
        HASHCNET_COMMIT, json=hashcnet_commit_body(merchant.test_token, session_id, reference)
    )
    assert_envelope(first, 400, "1021")
    again = await client.post(
        HASHCNET_COMMIT, json=hashcnet_commit_body(merchant.test_token, session_id, reference)
    )
    error = assert_envelope(again, 400, "1013")
    assert error["error_data"]["state"] == "Failed"
    assert isinstance(error["error_data"]["id"], int)
    assert await payment_count(client, merchant.merchant_id) == 1
    await assert_books_balance(client.gateway.db)


async def test_1013_same_reference_at_the_same_instant_executes_once(
    client: AppClient, merchant: NewMerchant
) -> None:
    reference = unique("p")
    sessions = [await session_of(client, merchant.test_token) for _ in range(4)]
    responses = await asyncio.gather(
        *(
            client.post(
                HASHCNET_COMMIT, json=hashcnet_commit_body(merchant.test_token, s, reference)
            )
            for s in sessions
        )
    )
    succeeded = [r for r in responses if r.status_code == 200]
    assert len(succeeded) == 1, [r.text for r in responses]
    for response in responses:
        if response.status_code != 200:
            error = assert_envelope(response, 400, "1013")
            assert error["error_data"]["id"] == succeeded[0].json()["id"]
    assert await available(client, merchant.test_token) == 1_000_000.0 - 999.0
    assert await payment_count(client, merchant.merchant_id) == 1
    await assert_books_balance(client.gateway.db)


# Bodies: 1014, 1015.


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"   ",
        b"not json",
        b"{",
        b'{"token": }',
        b"{'token': 'x'}",
        b'{"amount": NaN}',
        b'{"amount": Infinity}',
        b"\xff\xfe{}",
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    ],
    ids=[
        "empty",
        "blank",
        "text",
        "open-brace",
        "no-value",
        "single-quotes",
        "nan",
        "infinity",
        "not-utf8",
        "nested-too-deep",
    ],
)
@pytest.mark.parametrize("endpoint", [HASHCNET_DETAILS, HASHCNET_COMMIT, ARROWNET_COMMIT])
async def test_1014_body_is_not_json(
    client: AppClient, merchant: NewMerchant, endpoint: str, content: bytes
) -> None:
    response = await client.post(
        endpoint,
        content=content,
        headers={
            "content-type": "application/json",
            "authorization": f"Token {merchant.test_token}",
        },
    )
    assert_envelope(response, 400, "1014")


@pytest.mark.parametrize(
    "content", [b"[]", b'[{"token": "x"}]', b'"text"', b"123", b"null", b"true"]
)
@pytest.mark.parametrize("endpoint", [HASHCNET_DETAILS, HASHCNET_COMMIT, ARROWNET_COMMIT, STATUS])
async def test_1015_body_is_json_but_not_an_object(
    client: AppClient, merchant: NewMerchant, endpoint: str, content: bytes
) -> None:
    response = await client.request(
        "GET" if endpoint == STATUS else "POST",
        endpoint,
        content=content,
        headers={
            "content-type": "application/json",
            "authorization": f"Token {merchant.test_token}",
        },
    )
    assert_envelope(response, 400, "1015")


# Money and the ISP: 1016, 1021.


async def test_1016_insufficient_credits(client: AppClient) -> None:
    merchant = await new_merchant(client.gateway.db, test_rupees=1)
    session_id = await session_of(client, merchant.test_token)
    response = await client.post(
        HASHCNET_COMMIT, json=hashcnet_commit_body(merchant.test_token, session_id)
    )
    assert_envelope(response, 400, "1016")
    assert await available(client, merchant.test_token) == 1.0
    assert await payment_count(client, merchant.merchant_id) == 0
    # Nothing was claimed: the session pays once credits are loaded.
    await service.load_credits(client.gateway.db, merchant.merchant_id, "test", 1000 * 100)
    retry = await client.post(
        HASHCNET_COMMIT, json=hashcnet_commit_body(merchant.test_token, session_id)
    )
    assert retry.status_code == 200, retry.text
    await assert_books_balance(client.gateway.db)


async def test_1016_not_when_the_credits_cover_the_amount_exactly(client: AppClient) -> None:
    merchant = await new_merchant(client.gateway.db, test_rupees=999)
    session_id = await session_of(client, merchant.test_token)
    response = await client.post(
        HASHCNET_COMMIT, json=hashcnet_commit_body(merchant.test_token, session_id)
    )
    assert response.status_code == 200, response.text
    assert await available(client, merchant.test_token) == 0.0
    await assert_books_balance(client.gateway.db)


async def test_1016_arrownet_insufficient_credits(client: AppClient) -> None:
    merchant = await new_merchant(client.gateway.db, test_rupees=1694)
    response = await client.post(ARROWNET_COMMIT, json=arrownet_commit_body(merchant.test_token))
    assert_envelope(response, 400, "1016")
    assert await available(client, merchant.test_token) == 1694.0
    await assert_books_balance(client.gateway.db)


async def test_1021_isp_refuses_the_payment_nothing_charged(
    client: AppClient, merchant: NewMerchant
) -> None:
    session_id = await session_of(client, merchant.test_token, "refuse-user")
    response = await client.post(
        HASHCNET_COMMIT, json=hashcnet_commit_body(merchant.test_token, session_id)
    )
    assert_envelope(response, 400, "1021")
    assert await available(client, merchant.test_token) == 1_000_000.0
    balance = await client.get(BALANCE, params={"token": merchant.test_token})
    assert balance.json()["credits_consumed"] == 0.0
    await assert_books_balance(client.gateway.db)


async def test_1021_arrownet_isp_refuses_the_payment_nothing_charged(
    client: AppClient, merchant: NewMerchant
) -> None:
    body = arrownet_commit_body(merchant.test_token, username="refuse-user")
    assert_envelope(await client.post(ARROWNET_COMMIT, json=body), 400, "1021")
    assert await available(client, merchant.test_token) == 1_000_000.0
    await assert_books_balance(client.gateway.db)


# Client errors of the service: 4000.


async def test_4000_unknown_username(client: AppClient, merchant: NewMerchant) -> None:
    body = hashcnet_details_body(merchant.test_token, username="no-such-user")
    error = assert_envelope(await client.post(HASHCNET_DETAILS, json=body), 400, "4000")
    assert error["details"] == "Username not found"


async def test_4000_arrownet_commit_for_an_unknown_username(
    client: AppClient, merchant: NewMerchant
) -> None:
    body = arrownet_commit_body(merchant.test_token, username="no-such-user")
    error = assert_envelope(await client.post(ARROWNET_COMMIT, json=body), 400, "4000")
    assert error["details"] == "Username not found"
    assert await payment_count(client, merchant.merchant_id) == 0


@pytest.mark.parametrize("session_id", [1, 6466, 2**53 - 1, 2**62])
async def test_4000_invalid_session(
    client: AppClient, merchant: NewMerchant, session_id: int
) -> None:
    body = hashcnet_commit_body(merchant.test_token, session_id)
    error = assert_envelope(await client.post(HASHCNET_COMMIT, json=body), 400, "4000")
    assert error["details"] == "Invalid session"
    assert await payment_count(client, merchant.merchant_id) == 0


async def test_4000_expired_session(db_url: str) -> None:
    async with app_client(db_url, session_ttl_s=0) as client:
        merchant = await new_merchant(client.gateway.db)
        session_id = await session_of(client, merchant.test_token)
        body = hashcnet_commit_body(merchant.test_token, session_id)
        error = assert_envelope(await client.post(HASHCNET_COMMIT, json=body), 400, "4000")
        assert "expired" in error["details"].lower()
        assert await available(client, merchant.test_token) == 1_000_000.0


async def test_4000_used_session(client: AppClient, merchant: NewMerchant) -> None:
    session_id = await session_of(client, merchant.test_token)
    first = await client.post(
        HASHCNET_COMMIT, json=hashcnet_commit_body(merchant.test_token, session_id)
    )
    assert first.status_code == 200, first.text
    again = await client.post(
        HASHCNET_COMMIT, json=hashcnet_commit_body(merchant.test_token, session_id)
    )
    error = assert_envelope(again, 400, "4000")
    assert "already used" in error["details"].lower()
    assert await available(client, merchant.test_token) == 1_000_000.0 - 999.0
    await assert_books_balance(client.gateway.db)


# Look-ups: 002.


async def test_002_status_of_an_unknown_reference(client: AppClient, merchant: NewMerchant) -> None:
    params = {"token": merchant.test_token, "reference": unique("nope")}
    assert_envelope(await client.get(STATUS, params=params), 400, "002")


# Paths and methods: 404, 405.


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/servicegroup/details/no-such-group/"),
        ("POST", "/api/servicegroup/commit/no-such-group"),
        ("POST", "/api/servicegroup/refund/hashcnet-v2/"),
        ("GET", "/api/nothing-here"),
        ("GET", "/"),
    ],
)
async def test_404_unknown_service_or_path_has_the_envelope(
    client: AppClient, merchant: NewMerchant, method: str, path: str
) -> None:
    response = await client.request(method, path, json={"token": merchant.test_token})
    assert response.status_code == 404
    error = assert_envelope(response, 404, response.json()["error_code"])
    assert error["error_data"] == {}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", HASHCNET_DETAILS),
        ("GET", HASHCNET_COMMIT.rstrip("/")),
        ("PUT", ARROWNET_COMMIT),
        ("POST", STATUS),
        ("POST", BULK_STATUS),
        ("DELETE", BALANCE),
        ("POST", BALANCE.rstrip("/")),
    ],
)
async def test_405_wrong_method_has_the_envelope(
    client: AppClient, merchant: NewMerchant, method: str, path: str
) -> None:
    response = await client.request(method, path, params={"token": merchant.test_token})
    assert response.status_code == 405
    assert_envelope(response, 405, response.json()["error_code"])


# Anything unexpected: 1017.


async def test_1017_unexpected_error_is_500_with_the_envelope_and_no_traceback(
    client: AppClient, merchant: NewMerchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = "kaboom-" + uuid.uuid4().hex

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(marker)

    monkeypatch.setattr(details_flow, "_found", crash)
    response = await client.post(
        HASHCNET_DETAILS,
        json=hashcnet_details_body(merchant.test_token),
        headers={"x-request-id": "crash-1"},
    )
    error = assert_envelope(response, 500, "1017")
    for leak in (marker, "Traceback", "RuntimeError", 'File "', "_found"):
        assert leak not in response.text
    # The request id the crash was logged with is given back, to quote to support.
    assert response.headers["x-request-id"] == "crash-1"
    assert "crash-1" in error["details"]


async def test_1017_commit_crash_after_the_hold_is_500_and_the_payment_can_be_looked_up(
    client: AppClient, merchant: NewMerchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = "kaboom-" + uuid.uuid4().hex

    async def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(marker)

    monkeypatch.setattr(commit_flow, "_pay", crash)
    session_id = await session_of(client, merchant.test_token)
    request = hashcnet_commit_body(merchant.test_token, session_id)
    response = await client.post(HASHCNET_COMMIT, json=request)
    assert_envelope(response, 500, "1017")
    assert marker not in response.text and "Traceback" not in response.text
    # The outcome is unknown: the credits stay held and the look-up says Processing.
    status = await client.get(
        STATUS, params={"token": merchant.test_token, "reference": request["reference"]}
    )
    assert status.status_code == 200, status.text
    assert status.json()["state"] == "Processing"
    assert await available(client, merchant.test_token) == 1_000_000.0 - 999.0
    # A retry never pays twice; it learns where the payment stands.
    retry = assert_envelope(await client.post(HASHCNET_COMMIT, json=request), 400, "1013")
    assert retry["error_data"] == {"id": status.json()["response_id"], "state": "Processing"}
    await assert_books_balance(client.gateway.db)
