"""Konnect (khalti-docs/Internet/konnect.md), over the API on both databases: the
document's three test users at every ISP and its payment, field by field and JSON type by
JSON type (tests/services/fixtures/konnect.json), and the ISPs it serves. What it shares
with Net Max is tested in test_customer_packages.py."""

from __future__ import annotations

import pytest

from bhuktani.merchants.service import NewMerchant
from bhuktani.services import hashcnet, konnect
from bhuktani.services.konnect import GROUP
from tests.conftest import AppClient
from tests.services.customer_packages import (
    KONNECT,
    KONNECT_FIXTURES,
    same_answer,
)
from tests.services.support import assert_refused, body

DETAILS = KONNECT_FIXTURES["details"]


def test_the_examples_are_the_documents() -> None:
    assert GROUP.examples.details == DETAILS["active"]["request"]
    assert GROUP.examples.commit == KONNECT_FIXTURES["commit"]["request"]


@pytest.mark.parametrize("isp", konnect.ISPS)
@pytest.mark.parametrize("user", ["active", "expired"])
async def test_the_documented_details_answer_at_every_isp(
    client: AppClient, merchant: NewMerchant, isp: str, user: str
) -> None:
    request = body(merchant.test_token, DETAILS[user]["request"], service_slug=isp)
    response = await client.post(KONNECT.details_path, json=request)
    assert response.status_code == 200, response.text
    same_answer(response.json(), DETAILS[user]["answer"])


@pytest.mark.parametrize("isp", konnect.ISPS)
async def test_the_new_user_gets_the_documented_refusal_at_every_isp(
    client: AppClient, merchant: NewMerchant, isp: str
) -> None:
    request = body(merchant.test_token, DETAILS["new"]["request"], service_slug=isp)
    response = await client.post(KONNECT.details_path, json=request)
    assert response.status_code == 400, response.text
    assert response.json() == DETAILS["new"]["answer"]


@pytest.mark.parametrize(
    "slug",
    [
        # Listed by the document as moved to a service group of its own (K1).
        "chitrawan-unique-net",
        "no-such-isp",
        hashcnet.ISPS[0],
    ],
)
async def test_an_isp_not_of_konnect_is_1010(
    client: AppClient, merchant: NewMerchant, slug: str
) -> None:
    """G11: an unknown service_slug is 1010 on the field."""
    request = body(merchant.test_token, DETAILS["active"]["request"], service_slug=slug)
    response = await client.post(KONNECT.details_path, json=request)
    assert_refused(response, "1010", "service_slug")


async def test_konnect_isps_are_not_served_by_another_group(
    client: AppClient, merchant: NewMerchant
) -> None:
    request = body(merchant.test_token, {"username": "pnt_test", "service_slug": "izone"})
    response = await client.post(f"/api/servicegroup/details/{hashcnet.SLUG}/", json=request)
    assert_refused(response, "1010", "service_slug")


async def test_details_without_a_service_slug_are_1010(
    client: AppClient, merchant: NewMerchant
) -> None:
    request = body(merchant.test_token, {"username": "active"})
    assert_refused(await client.post(KONNECT.details_path, json=request), "1010", "service_slug")
