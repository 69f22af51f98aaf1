"""The documents' own examples, sent as a client written against them sends them, and
the answers compared with the documented answers field by field and by JSON type."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bhuktani.merchants.service import NewMerchant
from bhuktani.services import hashcnet_v2
from tests.conftest import AppClient
from tests.seeds import example, json_type, shape_differences, underscored

HASHCNET = "hashcnet-v2.md"
ARROWNET = "arrownet.md"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def hashcnet_details(client: AppClient, token: str, slug: str) -> dict[str, Any]:
    request = example(HASHCNET, 0) | {
        "token": token,
        "service_slug": slug,
        "reference": unique("d"),
    }
    response = await client.post("/api/servicegroup/details/hashcnet-v2/", json=request)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("slug", hashcnet_v2.ISPS)
async def test_hashcnet_details_matches_the_documented_answer(
    client: AppClient, merchant: NewMerchant, slug: str
) -> None:
    body = await hashcnet_details(client, merchant.test_token, slug)
    documented = example(HASHCNET, 1)
    assert shape_differences(documented, body) == []
    assert isinstance(body["session_id"], int)
    assert {k: v for k, v in body.items() if k != "session_id"} == {
        k: v for k, v in documented.items() if k != "session_id"
    }


@pytest.mark.parametrize("slug", ["vns", "techminds", "airson-internet"])
async def test_hashcnet_payment_example_as_documented(
    client: AppClient, merchant: NewMerchant, slug: str
) -> None:
    session_id = (await hashcnet_details(client, merchant.test_token, slug))["session_id"]
    # The documented request, keys with spaces and the amount 999.00 included.
    request = example(HASHCNET, 2) | {
        "session id": session_id,
        "token": merchant.test_token,
        "reference": unique("p"),
    }
    assert request["package code"] == "9" and request["amount"] == 999.0
    response = await client.post("/api/servicegroup/commit/hashcnet-v2/", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    documented = underscored(example(HASHCNET, 3))
    assert shape_differences(documented, body) == []
    for field in ("status", "state", "message", "extra_data"):
        assert body[field] == documented[field], field
    assert body["credits_consumed"] == 999.0
    assert body["credits_available"] == 1_000_000.0 - 999.0
    assert body["detail"].isdigit()


async def test_arrownet_details_is_the_documented_answer(
    client: AppClient, merchant: NewMerchant
) -> None:
    request = example(ARROWNET, 1) | {"token": merchant.test_token}
    response = await client.post("/api/servicegroup/details/arrownet/", json=request)
    assert response.status_code == 200, response.text
    documented = example(ARROWNET, 2)
    assert shape_differences(documented, response.json()) == []
    assert response.json() == documented


async def test_arrownet_unknown_username_is_the_documented_error(
    client: AppClient, merchant: NewMerchant
) -> None:
    request = {"token": merchant.test_token, "username": "no-such-user"}
    response = await client.post("/api/servicegroup/details/arrownet/", json=request)
    assert response.status_code == 400
    assert response.json() == example(ARROWNET, 3)


async def test_arrownet_payment_example_as_documented(
    client: AppClient, merchant: NewMerchant
) -> None:
    request = example(ARROWNET, 5) | {"token": merchant.test_token, "reference": unique("a")}
    response = await client.post("/api/servicegroup/commit/arrownet/", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    # Decision (spec/API.md 4.2): the credits fields are added, as for every service.
    documented = example(ARROWNET, 6) | {"credits_consumed": 1695.0, "credits_available": 0.0}
    assert shape_differences(documented, body) == []
    assert {k: v for k, v in body.items() if k not in ("id", "credits_available")} == {
        k: v for k, v in documented.items() if k not in ("id", "credits_available")
    }
    assert body["credits_available"] == 1_000_000.0 - 1695.0


async def test_arrownet_validation_error_has_the_documented_fields(
    client: AppClient, merchant: NewMerchant
) -> None:
    request = example(ARROWNET, 5) | {
        "token": merchant.test_token,
        "reference": unique("a"),
        "amount": "1694.00",
    }
    response = await client.post("/api/servicegroup/commit/arrownet/", json=request)
    assert response.status_code == 400
    body = response.json()
    documented = example(ARROWNET, 7)
    assert set(documented) <= set(body)
    assert {k: json_type(body[k]) for k in documented} == {
        k: json_type(v) for k, v in documented.items()
    }
    assert body["error_code"] == "1010"
    assert body["message"] == "Validation error"
    assert body["error_data"] == {
        "amount": ["Amount 1694.00 does not match the plan price 1695.00"]
    }
