"""Strict inputs (docs/API.md section 1): a NUL anywhere in a request is a 1010 on both
databases, and every number is read exactly, from ASCII digits only."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bhuktani.merchants.service import NewMerchant
from tests.api.test_errors import arrownet_commit_body, hashcnet_commit_body, payment_count
from tests.api.test_http_rules import (
    ARROWNET_COMMIT,
    ARROWNET_DETAILS,
    BALANCE,
    BULK_STATUS,
    COMMIT,
    DETAILS,
    STATUS,
)
from tests.api.test_isolation import session_of, unique
from tests.conftest import AppClient


def assert_1010(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["error_code"] == "1010", body
    return body


# NUL: once a 500 (1017) on PostgreSQL, which cannot store or compare it in text.


@pytest.mark.parametrize("reference", ["a\x00b", "\x00", "r-1\x00"])
async def test_nul_in_a_status_query_is_1010(
    client: AppClient, merchant: NewMerchant, reference: str
) -> None:
    response = await client.get(
        STATUS, params={"token": merchant.test_token, "reference": reference}
    )
    assert_1010(response)


async def test_nul_in_a_bulk_status_query_is_1010(client: AppClient, merchant: NewMerchant) -> None:
    params = {"token": merchant.test_token, "references": "r-1,a\x00b", "reference_length": "2"}
    assert_1010(await client.get(BULK_STATUS, params=params))


async def test_nul_in_a_query_parameter_name_is_1010(
    client: AppClient, merchant: NewMerchant
) -> None:
    response = await client.get(
        STATUS, params={"token": merchant.test_token, "reference": "r-1", "x\x00": "1"}
    )
    assert_1010(response)


@pytest.mark.parametrize("endpoint", [STATUS, BULK_STATUS])
async def test_nul_escaped_in_a_json_body_of_a_look_up_is_1010(
    client: AppClient, merchant: NewMerchant, endpoint: str
) -> None:
    body = {"token": merchant.test_token, "reference": "a\x00b", "references": "a\x00b"}
    body["reference_length"] = "1"
    # json= writes the NUL as the escape \u0000, as any JSON client does.
    response = await client.request("GET", endpoint, json=body)
    assert b"\\u0000" in response.request.content
    assert_1010(response)


async def test_nul_as_a_raw_byte_in_a_body_is_1010(
    client: AppClient, merchant: NewMerchant
) -> None:
    raw = b'{"token": "' + merchant.test_token.encode() + b'", "reference": "a\x00b"}'
    assert_1010(await client.request("GET", STATUS, content=raw))
    assert_1010(await client.post(ARROWNET_DETAILS, content=raw))


@pytest.mark.parametrize(
    ("endpoint", "fields"),
    [
        (DETAILS, {"reference": unique("d"), "username": "jeet\x00enaug4", "service_slug": "vns"}),
        (DETAILS, {"reference": unique("d"), "username": "jeetenaug4", "service_slug": "v\x00ns"}),
        (ARROWNET_DETAILS, {"username": "Pradhanang\x00"}),
        (ARROWNET_COMMIT, {"reference": unique("a"), "username": "Prad\x00hanang",
                           "amount": "1695.00", "duration": 1}),
        (ARROWNET_COMMIT, {"reference": unique("a"), "username": "Pradhanang",
                           "amount": "1695.00", "duration": 1, "note": "\x00"}),
        (ARROWNET_COMMIT, {"reference": unique("a"), "username": "Pradhanang",
                           "amount": "1695.00", "duration": 1, "k\x00": 1}),
    ],
)  # fmt: skip
async def test_nul_anywhere_in_a_service_body_is_1010(
    client: AppClient, merchant: NewMerchant, endpoint: str, fields: dict[str, Any]
) -> None:
    response = await client.post(endpoint, json={"token": merchant.test_token, **fields})
    assert_1010(response)
    assert await payment_count(client, merchant.merchant_id) == 0


async def test_nul_in_the_token_header_is_1010(client: AppClient, merchant: NewMerchant) -> None:
    # A client library that lets it through (h11 and httptools refuse it on the wire).
    request = client.build_request("GET", BALANCE)
    request.headers["Authorization"] = f"Token {merchant.test_token}\x00"
    assert_1010(await client.send(request))


async def test_nul_in_the_token_field_is_1010(client: AppClient, merchant: NewMerchant) -> None:
    response = await client.get(BALANCE, params={"token": merchant.test_token + "\x00"})
    assert_1010(response)


async def test_a_backslash_u_text_that_is_no_nul_is_served(
    client: AppClient, merchant: NewMerchant
) -> None:
    """`\\\\u0000` in JSON is a backslash and the text u0000, not a NUL."""
    raw = b'{"token": "' + merchant.test_token.encode() + b'", "username": "x\\\\u0000"}'
    response = await client.post(ARROWNET_DETAILS, content=raw)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "4000"  # looked up, and not found


# Numbers: exact, ASCII digits only.


@pytest.mark.parametrize("amount", ["99_9", "9_99.00", "1_695.00"])
async def test_an_amount_with_an_underscore_is_1010(
    client: AppClient, merchant: NewMerchant, amount: str
) -> None:
    session_id = await session_of(client, merchant.test_token)
    body = hashcnet_commit_body(merchant.test_token, session_id, amount=amount)
    body_data = assert_1010(await client.post(COMMIT, json=body))
    assert "amount" in body_data["error_data"]
    assert await payment_count(client, merchant.merchant_id) == 0


@pytest.mark.parametrize(
    "number",
    [
        b"998.9999999999999999999999999999999999999",
        b"999.0000000000000000000000000000000000001",
        b"998.99999999999999999999999999999",
    ],
)
async def test_a_long_json_number_is_never_rounded_to_a_price(
    client: AppClient, merchant: NewMerchant, number: bytes
) -> None:
    session_id = await session_of(client, merchant.test_token)
    raw = (
        b'{"token": "%s", "reference": "%s", "session_id": %d, "package_code": 9,'
        b' "duration_code": "1", "amount": %s}'
        % (merchant.test_token.encode(), unique("p").encode(), session_id, number)
    )
    body = assert_1010(await client.post(COMMIT, content=raw))
    assert "amount" in body["error_data"]
    assert await payment_count(client, merchant.merchant_id) == 0


async def test_a_long_json_number_of_an_exact_price_is_read(
    client: AppClient, merchant: NewMerchant
) -> None:
    session_id = await session_of(client, merchant.test_token)
    raw = (
        b'{"token": "%s", "reference": "%s", "session_id": %d, "package_code": 9,'
        b' "duration_code": "1", "amount": 999.000000000000000000000000000000000000}'
        % (merchant.test_token.encode(), unique("p").encode(), session_id)
    )
    response = await client.post(COMMIT, content=raw)
    assert response.status_code == 200, response.text
    assert response.json()["credits_consumed"] == 999.0


@pytest.mark.parametrize("amount", ["１６９５.００", "1695.0٠", " 16 95.00", "1695.00\u00a0"])
async def test_an_amount_with_other_digits_or_inner_space_is_1010(
    client: AppClient, merchant: NewMerchant, amount: str
) -> None:
    body = arrownet_commit_body(merchant.test_token, amount=amount)
    assert_1010(await client.post(ARROWNET_COMMIT, json=body))
    assert await payment_count(client, merchant.merchant_id) == 0


@pytest.mark.parametrize("length", ["１", "٢", "1_0", "+1", "1 0", "1.0", "¹", "1\u00a0"])
async def test_reference_length_takes_ascii_digits_only(
    client: AppClient, merchant: NewMerchant, length: str
) -> None:
    params = {"token": merchant.test_token, "references": "r-1", "reference_length": length}
    body = assert_1010(await client.get(BULK_STATUS, params=params))
    assert "reference_length" in body["error_data"]


async def test_reference_length_of_ascii_digits_is_read(
    client: AppClient, merchant: NewMerchant
) -> None:
    params = {"token": merchant.test_token, "references": "r-1,r-2", "reference_length": "2"}
    response = await client.get(BULK_STATUS, params=params)
    assert response.status_code == 200, response.text
    assert len(response.json()["detail"]) == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("package_code", "９"),
        ("package_code", "9_0"),
        ("session_id", "６４６６"),
        ("session_id", "6_466"),
    ],
)
async def test_hashcnet_numeric_fields_take_ascii_digits_only(
    client: AppClient, merchant: NewMerchant, field: str, value: str
) -> None:
    session_id = await session_of(client, merchant.test_token)
    body = hashcnet_commit_body(merchant.test_token, session_id)
    body[field] = value
    response = assert_1010(await client.post(COMMIT, json=body))
    assert field in response["error_data"]


@pytest.mark.parametrize("duration", ["１", "1_2", "١٢"])
async def test_arrownet_duration_takes_ascii_digits_only(
    client: AppClient, merchant: NewMerchant, duration: str
) -> None:
    body = arrownet_commit_body(merchant.test_token, duration=duration)
    response = assert_1010(await client.post(ARROWNET_COMMIT, json=body))
    assert "duration" in response["error_data"]
