"""Khalti's staging users of HashCNet V2 ISPs (test-data/testdata.md) beside the
document's jeetenaug4: each is found at its ISP, is offered the document's plans, and pays."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bhuktani.merchants.service import NewMerchant
from bhuktani.services import hashcnet_v2
from tests.conftest import AppClient
from tests.support import assert_books_balance

DETAILS = f"/api/servicegroup/details/{hashcnet_v2.SLUG}/"
COMMIT = f"/api/servicegroup/commit/{hashcnet_v2.SLUG}/"


def fresh(token: str, **fields: Any) -> dict[str, Any]:
    return {"token": token, "reference": f"ref-{uuid.uuid4().hex}", **fields}


@pytest.mark.parametrize(
    ("isp", "username"),
    [("bbn-internet", "pnt_test"), ("techminds", "9824481540"), ("ultra-net", "000044")],
)
async def test_a_staging_user_is_found_offered_the_plans_and_pays(
    client: AppClient, merchant: NewMerchant, isp: str, username: str
) -> None:
    token = merchant.test_token
    mine = await client.post(DETAILS, json=fresh(token, username=username, service_slug=isp))
    theirs = await client.post(DETAILS, json=fresh(token, username="jeetenaug4", service_slug=isp))
    assert mine.status_code == 200, mine.text
    found, documented = mine.json(), theirs.json()
    assert found["customer_name"].startswith(f"{username}(")
    assert found["available_packages"] == documented["available_packages"]
    assert found["plan_detail"] == documented["plan_detail"]
    commit = fresh(
        token,
        session_id=found["session_id"],
        package_code=9,
        duration_code="1",
        amount=999.00,
    )
    paid = await client.post(COMMIT, json=commit)
    assert paid.status_code == 200, paid.text
    assert paid.json()["state"] == "Success"
    await assert_books_balance(client.gateway.db)
