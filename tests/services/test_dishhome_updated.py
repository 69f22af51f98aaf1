"""DishHome (khalti-docs/Internet/dishhome.md), over the API on both databases: the
document's examples field by field and JSON type by JSON type (tests/services/fixtures/
dishhome_updated.json; the commit's placeholders filled as G2 reads them, the session from
the details example, the idx of the 500 recharge, D3), each option at its price, each
refusal charging nothing, the scenario users, and the LIVE path against isp-sim."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bhuktani.errors import Refusal
from bhuktani.isps.base import Duration, Package
from bhuktani.merchants.service import NewMerchant
from bhuktani.sandbox import isp_sim
from bhuktani.services import dishhome_updated
from bhuktani.services.base import CommitView
from bhuktani.services.dishhome_updated import GROUP, SANDBOX_USER
from tests.conftest import AppClient
from tests.seeds import shape_differences
from tests.services.support import (
    assert_refused,
    balance_paisa,
    body,
    same_shape,
    serving_isp_sim,
    state_of,
)
from tests.support import assert_books_balance, eventually, new_merchant

FIXTURES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "dishhome_updated.json").read_text()
)
DETAILS = f"/api/servicegroup/details/{GROUP.slug}/"
COMMIT = f"/api/servicegroup/commit/{GROUP.slug}/"
# Per call and clock-relative values: typed, not compared (decision G9); `detail` is
# compared field by field below.
PER_CALL = {"session_id", "id", "credits_available", "detail"}
# In a recharge's detail: the ISP's per-call values (G9) and its words after the recharge
# (D4), typed only.
DETAIL_TYPED_ONLY = {
    "updated_balance",
    "expiry_date",
    "customer_status",
    "transaction_id",
    "is_bonus_added",
}
OPTIONS = FIXTURES["details"]["answer"]["packages"]
TEST_DATA_CUSTOMER = FIXTURES["test_data_customer"]


def assert_documented_recharge(answer: dict[str, Any]) -> None:
    same_shape(answer, FIXTURES["commit"]["answer"], typed_only=PER_CALL)
    same_shape(answer["detail"], FIXTURES["commit"]["answer"]["detail"], DETAIL_TYPED_ONLY)


async def details(client: AppClient, token: str, customer: Any = "1111") -> dict[str, Any]:
    response = await client.post(DETAILS, json=body(token, {"customer_id": customer}))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def recharge(token: str, session_id: int, idx: int = 9, **fields: Any) -> dict[str, Any]:
    """A commit as the document writes it: the session and the idx quoted (G2)."""
    return body(token, {"session_id": str(session_id), "package_id": str(idx)}, **fields)


async def pay(client: AppClient, token: str, idx: int = 9, customer: Any = "1111") -> Any:
    session_id = (await details(client, token, customer))["session_id"]
    return await client.post(COMMIT, json=recharge(token, session_id, idx))


def test_the_examples_are_the_documents() -> None:
    assert GROUP.examples.details == FIXTURES["details"]["request"]
    assert GROUP.examples.commit == FIXTURES["commit"]["request"]


async def test_the_documents_customer_gets_the_documented_answer(
    client: AppClient, merchant: NewMerchant
) -> None:
    """Decision D1: "1111", sent as a string, answers the documented data."""
    request = body(merchant.test_token, FIXTURES["details"]["request"])
    response = await client.post(DETAILS, json=request)
    assert response.status_code == 200, response.text
    same_shape(response.json(), FIXTURES["details"]["answer"], typed_only={"session_id"})


@pytest.mark.parametrize("customer", [1111, "1111", " 1111 ", 71909771942, "71909771942"])
async def test_a_customer_id_is_a_number_or_a_string(
    client: AppClient, merchant: NewMerchant, customer: Any
) -> None:
    """G2; the test data's TEST cas id (D1) is a customer with the same account."""
    answer = await details(client, merchant.test_token, customer)
    same_shape(answer, FIXTURES["details"]["answer"], typed_only={"session_id", "customer_id"})
    assert answer["customer_id"] == int(str(customer).strip())


async def test_the_documented_recharge_pays_idx_9_and_spends_the_session(
    client: AppClient, merchant: NewMerchant
) -> None:
    """Decision D3: the example recharges 500, the Regular option idx 9."""
    token = merchant.test_token
    before = await balance_paisa(client, token)
    session_id = (await details(client, token))["session_id"]
    request = body(token, FIXTURES["commit"]["request"], session_id=str(session_id))
    response = await client.post(COMMIT, json=request)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_documented_recharge(answer)
    assert answer["credits_consumed"] == answer["detail"]["recharged_amount"] == 500
    assert await balance_paisa(client, token) == before - 50000
    # A payment spends its session (G10): the same session again, a new reference: 4000.
    again = recharge(token, session_id)
    assert_refused(await client.post(COMMIT, json=again), "4000")
    assert await balance_paisa(client, token) == before - 50000
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("option", OPTIONS, ids=[f"idx-{o['idx']}" for o in OPTIONS])
async def test_each_option_is_paid_at_its_price_without_an_amount(
    client: AppClient, merchant: NewMerchant, option: dict[str, Any]
) -> None:
    """Decision D2: the idx sets the price."""
    token = merchant.test_token
    before = await balance_paisa(client, token)
    response = await pay(client, token, option["idx"])
    assert response.status_code == 200, response.text
    answer = response.json()
    assert shape_differences(FIXTURES["commit"]["answer"], answer) == []
    assert answer["credits_consumed"] == answer["detail"]["recharged_amount"] == option["price"]
    assert await balance_paisa(client, token) == before - round(option["price"] * 100)
    await assert_books_balance(client.gateway.db)


async def test_a_recharge_can_be_bought_again_and_the_next_details_offers_the_same(
    client: AppClient, merchant: NewMerchant
) -> None:
    """The document implies no change to the account a details call shows (D4: its own
    dates contradict): the options stay, and each can be paid again."""
    token = merchant.test_token
    before = await balance_paisa(client, token)
    for _ in range(2):
        response = await pay(client, token, 9)
        assert response.status_code == 200, response.text
        same_shape(
            await details(client, token), FIXTURES["details"]["answer"], typed_only={"session_id"}
        )
    assert await balance_paisa(client, token) == before - 2 * 50000
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("amount", [500, 500.0, "500.00", "500"])
async def test_an_amount_sent_with_the_idx_is_accepted_when_it_is_the_price(
    client: AppClient, merchant: NewMerchant, amount: Any
) -> None:
    """Decision D2: the document sends no amount; one that is the option's price is read
    and changes nothing."""
    token = merchant.test_token
    session_id = (await details(client, token))["session_id"]
    response = await client.post(COMMIT, json=recharge(token, session_id, 9, amount=amount))
    assert response.status_code == 200, response.text
    assert response.json()["credits_consumed"] == 500


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        # Decision D2: the wrong-amount case is an unknown idx.
        ({"package_id": "99"}, "1010", "package_id"),
        ({"package_id": 0}, "1010", "package_id"),
        ({"package_id": "09x"}, "1010", "package_id"),
        ({"package_id": ""}, "1010", "package_id"),
        ({"package_id": None}, "1010", "package_id"),
        # Decision D2: an extra amount that is not the option's price.
        ({"amount": 400}, "1010", "amount"),
        ({"amount": "500.01"}, "1010", "amount"),
        ({"amount": "five hundred"}, "1010", "amount"),
        ({"session_id": 123456789}, "4000", None),
        ({"session_id": None}, "1010", "session_id"),
        ({"reference": ""}, "1012", None),
        # Decision G3: the example has no reference; one is required, as on every session API.
        ({"reference": None}, "1012", None),
    ],
)
async def test_a_refused_commit_charges_nothing(
    client: AppClient,
    merchant: NewMerchant,
    fields: dict[str, Any],
    code: str,
    field: str | None,
) -> None:
    token = merchant.test_token
    before = await balance_paisa(client, token)
    session_id = (await details(client, token))["session_id"]
    request = recharge(token, session_id)
    request.update(fields)
    assert_refused(await client.post(COMMIT, json=request), code, field)
    assert await balance_paisa(client, token) == before
    await assert_books_balance(client.gateway.db)


async def test_a_duplicate_reference_is_1013_on_a_fresh_session(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    first = recharge(token, (await details(client, token))["session_id"], 9)
    paid = await client.post(COMMIT, json=first)
    assert paid.status_code == 200, paid.text
    before = await balance_paisa(client, token)
    for idx in (9, 1):
        again = recharge(token, (await details(client, token))["session_id"], idx)
        response = await client.post(COMMIT, json=again | {"reference": first["reference"]})
        assert_refused(response, "1013")
        assert response.json()["error_data"] == {"id": paid.json()["id"], "state": "Success"}
    assert await balance_paisa(client, token) == before
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("customer", ["4242", 4242, "no-such-customer"])
async def test_an_unknown_customer_is_4000(
    client: AppClient, merchant: NewMerchant, customer: Any
) -> None:
    """Decision G5."""
    request = body(merchant.test_token, {"customer_id": customer})
    assert_refused(await client.post(DETAILS, json=request), "4000")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"customer_id": True}, "1010"),
        ({"customer_id": 1111.5}, "1010"),
        ({"customer_id": ""}, "1010"),
        ({"customer_id": None}, "1010"),
        ({"reference": None}, "1012"),
    ],
)
async def test_a_malformed_details_request_is_refused(
    client: AppClient, merchant: NewMerchant, fields: dict[str, Any], code: str
) -> None:
    request = body(merchant.test_token, FIXTURES["details"]["request"], **fields)
    assert_refused(await client.post(DETAILS, json=request), code)


# The scenario users of docs/SANDBOX.md, derived from the document's customer.


@pytest.mark.parametrize("username", ["due-user", "expired-user"])
async def test_the_scenario_users_have_the_documented_account(
    client: AppClient, merchant: NewMerchant, username: str
) -> None:
    answer = await details(client, merchant.test_token, username)
    same_shape(answer, FIXTURES["details"]["answer"], typed_only={"session_id", "customer_id"})


async def test_the_refuse_user_is_1021_and_charged_nothing(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    before = await balance_paisa(client, token)
    assert_refused(await pay(client, token, 9, "refuse-user"), "1021")
    assert await balance_paisa(client, token) == before
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("username", ["slow-user", "flaky-user"])
async def test_an_unclear_answer_is_processing_then_success(
    client: AppClient, merchant: NewMerchant, username: str
) -> None:
    token = merchant.test_token
    before = await balance_paisa(client, token)
    session_id = (await details(client, token, username))["session_id"]
    request = recharge(token, session_id, 2)
    response = await client.post(COMMIT, json=request)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert shape_differences(FIXTURES["commit"]["answer"], answer) == []
    assert answer["state"] == "Processing"
    assert answer["detail"]["response_description"] == "Recharge is being processed"
    assert answer["detail"]["transaction_id"] == 0, "no ISP transaction yet"
    assert answer["credits_consumed"] == 1200
    assert await balance_paisa(client, token) == before - 120000, "the credits are held"

    async def success() -> bool:
        return await state_of(client, token, request["reference"]) == "Success"

    await eventually(success, timeout_s=15)
    assert await balance_paisa(client, token) == before - 120000
    await assert_books_balance(client.gateway.db)


async def test_a_lost_payment_is_processing_then_failed_and_refunded(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    before = await balance_paisa(client, token)
    session_id = (await details(client, token, "lost-user"))["session_id"]
    request = recharge(token, session_id, 9)
    response = await client.post(COMMIT, json=request)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "Processing"

    async def failed() -> bool:
        return await state_of(client, token, request["reference"]) == "Failed"

    await eventually(failed, timeout_s=15)
    assert await balance_paisa(client, token) == before
    await assert_books_balance(client.gateway.db)


# What an ISP sends over the ISP protocol is the group's to read: the documented shape holds.


def test_the_isps_own_fields_keep_the_documented_types_whatever_it_sends() -> None:
    options = (
        Duration("9", "Regular", 50000, 0, shown={"bonus": "25", "is_regular": 1}),
        Duration("09", "Padded", 50000, 0),
        Duration("custom_1", "Not an idx", 50000, 0),
        Duration("9", "Second 9", 70000, 0),
    )
    subscriber = replace(
        SANDBOX_USER,
        packages=(Package(SANDBOX_USER.current_plan, 1, options),),
        shown={"quantity": "1", "zone": None, "yearly_price": True},
    )
    answer = GROUP.render_details(subscriber, 7)
    documented = FIXTURES["details"]["answer"]
    assert shape_differences(documented, answer) == []
    assert answer["packages"] == [
        {
            "description": "Regular",
            "price": 500.0,
            "duration_type": 0,
            "bonus": 0.0,
            "is_regular": False,
            "idx": 9,
        }
    ]
    assert (answer["quantity"], answer["zone"], answer["yearly_price"]) == (0, "", 0.0)
    # What is not shown is not payable; idx 9 is the first option of that code.
    query = GROUP.parse_commit({"reference": "r1", "session_id": 7, "package_id": "9"})
    assert GROUP.choose(subscriber, query)[1] is options[0]
    with pytest.raises(Refusal):
        GROUP.choose(subscriber, replace(query, duration_code="custom_1"))


@pytest.mark.parametrize(
    ("receipt", "transaction_id"), [("140251146", 140251146), ("TX-1", 0), ("", 0)]
)
def test_the_transaction_id_is_the_isps_receipt_when_it_is_a_number(
    receipt: str, transaction_id: int
) -> None:
    view = CommitView("Success", 5, receipt, 50000, 100)
    assert GROUP.render_commit(view)["detail"]["transaction_id"] == transaction_id


# LIVE: the group's ISP system over the ISP protocol, served by isp-sim.


@pytest_asyncio.fixture
async def live_isp(client: AppClient) -> AsyncIterator[isp_sim.IspSimulator]:
    async with serving_isp_sim(client, dishhome_updated.SLUG) as simulator:
        yield simulator


async def test_a_live_recharge_reaches_the_isp_once(
    client: AppClient, live_isp: isp_sim.IspSimulator
) -> None:
    merchant = await new_merchant(client.gateway.db, live_rupees=1000)
    token = merchant.live_token
    answer = await details(client, token)
    same_shape(answer, FIXTURES["details"]["answer"], typed_only={"session_id"})
    response = await client.post(COMMIT, json=recharge(token, answer["session_id"], 9))
    assert response.status_code == 200, response.text
    assert_documented_recharge(response.json())
    applied = live_isp.applied().body
    assert isinstance(applied, dict)
    mine = [p for p in applied["payments"] if p["payment_id"] == response.json()["id"]]
    assert mine == [
        {
            "payment_id": response.json()["id"],
            "group": dishhome_updated.SLUG,
            "isp": dishhome_updated.SLUG,
            "username": "1111",
            "amount_paisa": 50000,
            "receipt": mine[0]["receipt"],
        }
    ]
    assert response.json()["detail"]["transaction_id"] == int(mine[0]["receipt"])
    assert await balance_paisa(client, token) == 50000
    await assert_books_balance(client.gateway.db)
