"""Net Max (khalti-docs/Internet/netmax.md), over the API on both databases: its one
documented test user and its payment, field by field and JSON type by JSON type
(tests/services/fixtures/net_max.json), and its other test users (K4). What it shares with
Konnect is tested in test_customer_packages.py."""

from __future__ import annotations

from bhuktani.merchants.service import NewMerchant
from bhuktani.services.net_max import GROUP
from tests.conftest import AppClient
from tests.services.customer_packages import (
    KONNECT_FIXTURES,
    NET_MAX,
    NET_MAX_FIXTURES,
    same_answer,
)
from tests.services.support import body


def test_the_examples_are_the_documents() -> None:
    assert GROUP.examples.details == NET_MAX_FIXTURES["details"]["request"]
    assert GROUP.examples.commit == NET_MAX_FIXTURES["commit"]["request"]


async def test_the_documented_details_answer(client: AppClient, merchant: NewMerchant) -> None:
    request = body(merchant.test_token, NET_MAX_FIXTURES["details"]["request"])
    response = await client.post(NET_MAX.details_path, json=request)
    assert response.status_code == 200, response.text
    same_answer(response.json(), NET_MAX_FIXTURES["details"]["answer"])


async def test_the_other_users_answer_as_the_shared_document_data(
    client: AppClient, merchant: NewMerchant
) -> None:
    """K4: the document's request names new/active/expired and its one answer is the
    expired user of the Konnect document, word for word: active and new answer as that
    document shows them."""
    for user in ("active", "new"):
        request = body(merchant.test_token, {"username": user})
        response = await client.post(NET_MAX.details_path, json=request)
        documented = KONNECT_FIXTURES["details"][user]["answer"]
        if documented["status"]:
            assert response.status_code == 200, response.text
            same_answer(response.json(), documented)
        else:
            assert response.status_code == 400, response.text
            assert response.json() == documented
