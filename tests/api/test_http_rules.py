"""The common rules of spec/API.md section 1: paths, the token, the body's size, loose
keys and loose types, usernames, amounts, and the request id."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bhuktani.merchants.service import NewMerchant
from tests.conftest import AppClient
from tests.support import assert_books_balance, new_merchant

DETAILS = "/api/servicegroup/details/hashcnet-v2/"
COMMIT = "/api/servicegroup/commit/hashcnet-v2/"
ARROWNET_DETAILS = "/api/servicegroup/details/arrownet/"
ARROWNET_COMMIT = "/api/servicegroup/commit/arrownet/"
STATUS = "/api/service/status/"
BULK_STATUS = "/api/service/bulk/status/"
BALANCE = "/api/balance/"
MAX_BODY_BYTES = 64 * 1024


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def details_body(token: str | None, username: str = "jeetenaug4") -> dict[str, Any]:
    body: dict[str, Any] = {
        "reference": unique("d"),
        "username": username,
        "service_slug": "vns",
    }
    if token is not None:
        body["token"] = token
    return body


async def details(client: AppClient, token: str, username: str = "jeetenaug4") -> dict[str, Any]:
    response = await client.post(DETAILS, json=details_body(token, username))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def session_of(client: AppClient, token: str, username: str = "jeetenaug4") -> int:
    session_id: int = (await details(client, token, username))["session_id"]
    return session_id


def commit_body(token: str | None, session_id: int, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reference": unique("p"),
        "session_id": session_id,
        "package_code": 9,
        "duration_code": "1",
        "amount": 999,
    }
    if token is not None:
        body["token"] = token
    return body | fields


def arrownet_body(token: str | None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reference": unique("a"),
        "username": "Pradhanang",
        "amount": "1695.00",
        "duration": 1,
    }
    if token is not None:
        body["token"] = token
    return body | fields


async def available(client: AppClient, token: str) -> float:
    response = await client.get(BALANCE, params={"token": token})
    assert response.status_code == 200, response.text
    credits: float = response.json()["credits_available"]
    return credits


def assert_refused(response: httpx.Response, code: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] is False and body["state"] == "Error"
    assert body["error_code"] == code, body
    return body


def header(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


# Paths: with and without the trailing slash, never a redirect.


@pytest.mark.parametrize("slash", ["/", ""], ids=["slash", "bare"])
@pytest.mark.parametrize(
    "endpoint",
    [DETAILS, COMMIT, ARROWNET_DETAILS, ARROWNET_COMMIT, STATUS, BULK_STATUS, BALANCE],
)
async def test_path_served_with_and_without_trailing_slash_without_redirect(
    client: AppClient, merchant: NewMerchant, endpoint: str, slash: str
) -> None:
    token = merchant.test_token
    reference = unique("p")
    path = endpoint.rstrip("/") + slash
    if endpoint == DETAILS:
        response = await client.post(path, json=details_body(token))
    elif endpoint == COMMIT:
        body = commit_body(token, await session_of(client, token), reference=reference)
        response = await client.post(path, json=body)
    elif endpoint == ARROWNET_DETAILS:
        response = await client.post(path, json={"token": token, "username": "Pradhanang"})
    elif endpoint == ARROWNET_COMMIT:
        response = await client.post(path, json=arrownet_body(token))
    else:
        paid = commit_body(token, await session_of(client, token), reference=reference)
        assert (await client.post(COMMIT, json=paid)).status_code == 200
        params = {"token": token, "reference": reference, "references": reference}
        response = await client.get(path, params=params | {"reference_length": "1"})
    assert response.status_code == 200, response.text
    assert "location" not in response.headers
    if endpoint in (COMMIT, ARROWNET_COMMIT):
        assert response.json()["state"] == "Success"
        await assert_books_balance(client.gateway.db)


# The token: in the body, or as `Authorization: Token …`; the body wins.


async def test_authorization_header_is_accepted_on_every_call(
    client: AppClient, merchant: NewMerchant
) -> None:
    auth = header(merchant.test_token)
    found = await client.post(DETAILS, json=details_body(None), headers=auth)
    assert found.status_code == 200, found.text
    reference = unique("p")
    body = commit_body(None, found.json()["session_id"], reference=reference)
    paid = await client.post(COMMIT, json=body, headers=auth)
    assert paid.status_code == 200, paid.text
    arrownet = await client.post(ARROWNET_COMMIT, json=arrownet_body(None), headers=auth)
    assert arrownet.status_code == 200, arrownet.text
    status = await client.get(STATUS, params={"reference": reference}, headers=auth)
    assert status.status_code == 200, status.text
    balance = await client.get(BALANCE, headers=auth)
    assert balance.json()["credits_available"] == 1_000_000.0 - 999.0 - 1695.0
    await assert_books_balance(client.gateway.db)


async def test_body_token_wins_over_the_authorization_header(
    client: AppClient, merchant: NewMerchant
) -> None:
    other = await new_merchant(client.gateway.db, test_rupees=5000)
    # Who pays is the body's merchant.
    response = await client.post(
        ARROWNET_COMMIT, json=arrownet_body(merchant.test_token), headers=header(other.test_token)
    )
    assert response.status_code == 200, response.text
    assert await available(client, merchant.test_token) == 1_000_000.0 - 1695.0
    assert await available(client, other.test_token) == 5000.0
    balance = await client.request(
        "GET", BALANCE, json={"token": other.test_token}, headers=header(merchant.test_token)
    )
    assert balance.json()["credits_available"] == 5000.0
    await assert_books_balance(client.gateway.db)


async def test_body_token_wins_even_when_it_is_wrong(
    client: AppClient, merchant: NewMerchant
) -> None:
    body = details_body("TEST:" + "0" * 20)
    response = await client.post(DETAILS, json=body, headers=header(merchant.test_token))
    assert_refused(response, "1002")


# The body's size: over 64 KiB is refused before it is parsed.


def padded_details(token: str, size: int) -> bytes:
    """A valid details body of exactly `size` bytes."""
    body = details_body(token) | {"padding": ""}
    base = len(json.dumps(body).encode())
    body["padding"] = "x" * (size - base)
    raw = json.dumps(body).encode()
    assert len(raw) == size
    return raw


async def test_body_of_exactly_64_kib_is_accepted(client: AppClient, merchant: NewMerchant) -> None:
    raw = padded_details(merchant.test_token, MAX_BODY_BYTES)
    response = await client.post(DETAILS, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("valid_json", [True, False], ids=["json", "not-json"])
async def test_body_over_64_kib_is_refused_before_parsing(
    client: AppClient, merchant: NewMerchant, valid_json: bool
) -> None:
    size = MAX_BODY_BYTES + 1
    raw = padded_details(merchant.test_token, size) if valid_json else b"{" * size
    response = await client.post(DETAILS, content=raw, headers={"content-type": "application/json"})
    # Not 1014: the body was never parsed.
    assert_refused(response, "1010")


async def test_body_over_64_kib_refused_on_lookups(
    client: AppClient, merchant: NewMerchant
) -> None:
    raw = b" " * MAX_BODY_BYTES + b"{}"
    response = await client.request(
        "GET", BALANCE, content=raw, headers=header(merchant.test_token)
    )
    assert_refused(response, "1010")


async def test_chunked_body_over_64_kib_is_refused_without_reading_it_all(
    client: AppClient, merchant: NewMerchant
) -> None:
    chunk = b" " * 4096
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        # At most 10 MiB, should the limit not hold.
        for _ in range(2560):
            sent += len(chunk)
            yield chunk

    request = client.build_request(
        "POST", DETAILS, content=endless(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await client.send(request)
    assert_refused(response, "1010")
    assert sent <= MAX_BODY_BYTES + 2 * len(chunk)


async def test_chunked_body_under_the_limit_is_read(
    client: AppClient, merchant: NewMerchant
) -> None:
    raw = json.dumps(details_body(merchant.test_token)).encode()

    async def in_pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 7):
            yield raw[start : start + 7]

    response = await client.post(
        DETAILS, content=in_pieces(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text


# Keys with spaces are read as keys with underscores.


async def test_keys_with_spaces_read_as_underscores_in_a_commit(
    client: AppClient, merchant: NewMerchant
) -> None:
    session_id = await session_of(client, merchant.test_token)
    body = {
        "token": merchant.test_token,
        "reference": unique("p"),
        "session id": session_id,
        "package code": "9",
        "duration code": "1",
        "amount": 999.0,
    }
    response = await client.post(COMMIT, json=body)
    assert response.status_code == 200, response.text
    assert all(" " not in key for key in response.json())
    await assert_books_balance(client.gateway.db)


async def test_keys_with_spaces_read_as_underscores_in_details(
    client: AppClient, merchant: NewMerchant
) -> None:
    body = {
        "token": merchant.test_token,
        "reference": unique("d"),
        "username": "jeetenaug4",
        "service slug": "techminds",
    }
    response = await client.post(DETAILS, json=body)
    assert response.status_code == 200, response.text


async def test_keys_with_spaces_read_as_underscores_in_bulk_status(
    client: AppClient, merchant: NewMerchant
) -> None:
    response = await client.request(
        "GET",
        BULK_STATUS,
        json={"token": merchant.test_token, "references": "r-1,r-2", "reference length": 2},
    )
    assert response.status_code == 200, response.text
    assert [e["state"] for e in response.json()["detail"]] == ["Error", "Error"]


# Numbers as strings, and the reverse.


@pytest.mark.parametrize(
    "fields",
    [
        {"session_id": "STRING", "package_code": 9, "duration_code": "1"},
        {"session_id": "INT", "package_code": "9", "duration_code": "1"},
        {"session_id": "INT", "package_code": 9, "duration_code": 1},
        {"session_id": "STRING", "package_code": "9", "duration_code": 1},
    ],
    ids=["session-id-string", "package-code-string", "duration-code-number", "all-swapped"],
)
async def test_numbers_as_strings_and_the_reverse_in_a_hashcnet_commit(
    client: AppClient, merchant: NewMerchant, fields: dict[str, Any]
) -> None:
    session_id = await session_of(client, merchant.test_token)
    sent = dict(fields)
    sent["session_id"] = str(session_id) if fields["session_id"] == "STRING" else session_id
    response = await client.post(COMMIT, json=commit_body(merchant.test_token, session_id) | sent)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "Success"
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("duration", [1, "1", " 1 "])
async def test_arrownet_duration_as_number_or_string(
    client: AppClient, merchant: NewMerchant, duration: Any
) -> None:
    body = arrownet_body(merchant.test_token, duration=duration)
    response = await client.post(ARROWNET_COMMIT, json=body)
    assert response.status_code == 200, response.text
    await assert_books_balance(client.gateway.db)


# Usernames are matched without regard to case and surrounding spaces.


@pytest.mark.parametrize("username", ["JEETENAUG4", "  jeetenaug4  ", " JeetenAug4\t"])
async def test_hashcnet_username_matched_without_case_or_spaces(
    client: AppClient, merchant: NewMerchant, username: str
) -> None:
    found = await details(client, merchant.test_token, username)
    assert found["customer_name"] == "jeetenaug4(23123213)"
    response = await client.post(COMMIT, json=commit_body(merchant.test_token, found["session_id"]))
    assert response.status_code == 200, response.text
    # The payment reached the one subscriber, whatever the spelling.
    assert (await details(client, merchant.test_token))["days_remaining"] == 314 + 30
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("username", ["PRADHANANG", " pradhanang ", "Pradhanang  "])
async def test_arrownet_username_matched_without_case_or_spaces(
    client: AppClient, merchant: NewMerchant, username: str
) -> None:
    found = await client.post(
        ARROWNET_DETAILS, json={"token": merchant.test_token, "username": username}
    )
    assert found.status_code == 200, found.text
    assert found.json()["full_name"] == "Ashish Pradhanang - Home"
    response = await client.post(
        ARROWNET_COMMIT, json=arrownet_body(merchant.test_token, username=username)
    )
    assert response.status_code == 200, response.text
    after = await client.post(
        ARROWNET_DETAILS, json={"token": merchant.test_token, "username": "Pradhanang"}
    )
    assert after.json()["days_remaining"] == 464 + 30
    await assert_books_balance(client.gateway.db)


# Amounts: numbers or strings, at most 2 decimals.


@pytest.mark.parametrize("amount", ["999", "999.0", "999.00", '"999.00"', '"999"', '"999.0"'])
async def test_amount_as_number_or_string_means_the_same(
    client: AppClient, merchant: NewMerchant, amount: str
) -> None:
    session_id = await session_of(client, merchant.test_token)
    body = commit_body(merchant.test_token, session_id, amount="AMOUNT")
    # Raw JSON, so that `999.00` reaches the gateway as written.
    raw = json.dumps(body).replace('"AMOUNT"', amount).encode()
    response = await client.post(COMMIT, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["credits_consumed"] == 999.0
    assert await available(client, merchant.test_token) == 1_000_000.0 - 999.0
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("amount", ["999.001", '"999.001"', "998.999", '"999.5e-3"', "1e-3"])
async def test_amount_with_more_than_2_decimals_is_refused(
    client: AppClient, merchant: NewMerchant, amount: str
) -> None:
    session_id = await session_of(client, merchant.test_token)
    body = commit_body(merchant.test_token, session_id, amount="AMOUNT")
    raw = json.dumps(body).replace('"AMOUNT"', amount).encode()
    response = await client.post(COMMIT, content=raw, headers={"content-type": "application/json"})
    error = assert_refused(response, "1010")
    assert list(error["error_data"]) == ["amount"]
    assert await available(client, merchant.test_token) == 1_000_000.0


async def test_arrownet_amount_as_number_or_string(
    client: AppClient, merchant: NewMerchant
) -> None:
    for amount in (1695, 1695.0, "1695", "1695.00"):
        body = arrownet_body(merchant.test_token, amount=amount)
        response = await client.post(ARROWNET_COMMIT, json=body)
        assert response.status_code == 200, (amount, response.text)
    assert await available(client, merchant.test_token) == 1_000_000.0 - 4 * 1695.0
    await assert_books_balance(client.gateway.db)


# The request id.


async def test_x_request_id_is_echoed(client: AppClient, merchant: NewMerchant) -> None:
    response = await client.post(
        DETAILS, json=details_body(merchant.test_token), headers={"X-Request-ID": "req-42.a_b"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-42.a_b"


async def test_x_request_id_is_echoed_on_a_refusal(client: AppClient) -> None:
    response = await client.get(BALANCE, headers={"X-Request-ID": "refused-1"})
    assert_refused(response, "1001")
    assert response.headers["x-request-id"] == "refused-1"


async def test_x_request_id_is_given_when_the_client_sends_none(
    client: AppClient, merchant: NewMerchant
) -> None:
    first = await client.get(BALANCE, params={"token": merchant.test_token})
    second = await client.get(BALANCE, params={"token": merchant.test_token})
    assert first.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


# Every answer: no type sniffing, no caching.


async def _crash(*_: Any) -> Any:
    raise RuntimeError("broken on purpose")


@pytest.mark.parametrize(
    "answer", ["success", "refusal", "unknown_path", "wrong_method", "healthz", "crash"]
)
async def test_every_answer_says_nosniff_and_no_store(
    client: AppClient, merchant: NewMerchant, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    from bhuktani.payments import lookup

    expected_status = {"success": 200, "refusal": 400, "unknown_path": 404}
    expected_status |= {"wrong_method": 405, "healthz": 200, "crash": 500}
    if answer == "success":
        response = await client.get(BALANCE, params={"token": merchant.test_token})
    elif answer == "refusal":
        response = await client.get(BALANCE)
    elif answer == "unknown_path":
        response = await client.get("/api/nowhere/")
    elif answer == "wrong_method":
        response = await client.delete(BALANCE)
    elif answer == "healthz":
        response = await client.get("/healthz")
    else:
        monkeypatch.setattr(lookup, "balance", _crash)
        response = await client.get(BALANCE, params={"token": merchant.test_token})
    assert response.status_code == expected_status[answer], response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-request-id"]
