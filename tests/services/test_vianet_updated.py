"""Vianet (khalti-docs/Internet/vianet-new.md), over the API on both databases: the
document's examples field by field and JSON type by JSON type (tests/services/fixtures/
vianet_updated.json; the commit's placeholders filled from the details example: the first
bill at its grand_total, the session quoted as the document quotes it, G2), the bills a
payment leaves behind, each refusal charging nothing, the scenario users, and the LIVE path
against isp-sim."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bhuktani.errors import InvalidFields, NothingToPay, ServiceUnavailable
from bhuktani.isps.base import Duration, Package
from bhuktani.merchants.service import NewMerchant
from bhuktani.sandbox import isp_sim
from bhuktani.services import vianet_updated
from bhuktani.services.base import CommitQuery
from bhuktani.services.vianet_updated import GROUP
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
    (Path(__file__).parent / "fixtures" / "vianet_updated.json").read_text()
)
DETAILS = f"/api/servicegroup/details/{GROUP.slug}/"
COMMIT = f"/api/servicegroup/commit/{GROUP.slug}/"
# Per call and clock-relative values: typed, not compared (decision G9).
PER_CALL = {"session_id", "id", "credits_available"}
# The test data's customer (decision V1).
TEST_CUSTOMER = FIXTURES["test_data_customer"]
BILLS = FIXTURES["details"]["answer"]["bills"]
# What each bill costs, in paisa, by payment_id: its grand_total (decision V3).
GRAND_TOTAL = {bill["payment_id"]: round(float(bill["grand_total"]) * 100) for bill in BILLS}


async def details(client: AppClient, token: str, customer: Any = "9099") -> dict[str, Any]:
    response = await client.post(DETAILS, json=body(token, {"customer_id": customer}))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def pending(answer: dict[str, Any]) -> list[str]:
    return [bill["payment_id"] for bill in answer["bills"]]


def bill_commit(token: str, session_id: int, payment_id: str, **fields: Any) -> dict[str, Any]:
    """A commit of one bill at its grand_total, as a client copies it from the details."""
    amount = next(b["grand_total"] for b in BILLS if b["payment_id"] == payment_id)
    example = {"session_id": session_id, "payment_id": payment_id, "amount": float(amount)}
    return body(token, example, **fields)


async def pay(client: AppClient, token: str, payment_id: str, customer: Any = "9099") -> Any:
    session_id = (await details(client, token, customer))["session_id"]
    return await client.post(COMMIT, json=bill_commit(token, session_id, payment_id))


def test_the_examples_are_the_documents() -> None:
    assert GROUP.examples.details == FIXTURES["details"]["request"]
    assert GROUP.examples.commit == FIXTURES["commit"]["request"]


async def test_the_documents_example_customer_gets_the_documented_answer(
    client: AppClient, merchant: NewMerchant
) -> None:
    request = body(merchant.test_token, FIXTURES["details"]["request"])
    response = await client.post(DETAILS, json=request)
    assert response.status_code == 200, response.text
    same_shape(response.json(), FIXTURES["details"]["answer"], typed_only={"session_id"})


async def test_the_test_data_customer_gets_the_documented_bills(
    client: AppClient, merchant: NewMerchant
) -> None:
    """Decision V1: "9099", sent as a string, answers the documented data under its own id."""
    answer = await details(client, merchant.test_token, TEST_CUSTOMER["customer_id"])
    same_shape(answer, FIXTURES["details"]["answer"], typed_only={"session_id", "customer_id"})
    assert answer["customer_id"] == 9099
    # Decision V2 reads the name whitespace-insensitively; the sandbox keeps it as written.
    assert answer["customer_name"] == "Suman  Shrestha"


@pytest.mark.parametrize("customer", [9099, "9099", " 9099 ", 110871, "110871"])
async def test_a_customer_id_is_a_number_or_a_string(
    client: AppClient, merchant: NewMerchant, customer: Any
) -> None:
    """G2: the document sends the id as a number, the test data as a string."""
    answer = await details(client, merchant.test_token, customer)
    assert answer["customer_id"] == int(str(customer).strip())
    assert pending(answer) == list(GRAND_TOTAL)


async def test_the_documented_payment_pays_the_grand_total_and_spends_the_session(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    before = await balance_paisa(client, token)
    session_id = (await details(client, token))["session_id"]
    request = body(token, FIXTURES["commit"]["request"], session_id=str(session_id))
    response = await client.post(COMMIT, json=request)
    assert response.status_code == 200, response.text
    same_shape(response.json(), FIXTURES["commit"]["answer"], typed_only=PER_CALL)
    assert await balance_paisa(client, token) == before - 27798
    # One bill per session (G10): the same session, another bill, a new reference: 4000.
    again = bill_commit(token, session_id, "1613143_PP")
    assert_refused(await client.post(COMMIT, json=again), "4000")
    assert await balance_paisa(client, token) == before - 27798
    await assert_books_balance(client.gateway.db)


async def test_a_paid_bill_leaves_the_next_details(
    client: AppClient, merchant: NewMerchant
) -> None:
    """Decision V5; the other bills stay as they were, in their order."""
    paid = await pay(client, merchant.test_token, "1613143_PP")
    assert paid.status_code == 200, paid.text
    answer = await details(client, merchant.test_token)
    assert answer["bills"] == [b for b in BILLS if b["payment_id"] != "1613143_PP"]
    # Another customer's copy of the bill is not paid by it.
    assert pending(await details(client, merchant.test_token, 110871)) == list(GRAND_TOTAL)


async def test_paying_a_paid_bill_on_a_fresh_session_is_the_documented_4000(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    assert (await pay(client, token, "1613142_PP")).status_code == 200
    before = await balance_paisa(client, token)
    response = await pay(client, token, "1613142_PP")
    assert response.status_code == 400, response.text
    assert response.json() == FIXTURES["commit"]["already_paid"]
    assert await balance_paisa(client, token) == before
    await assert_books_balance(client.gateway.db)


async def test_once_every_bill_is_paid_details_answer_the_documented_7000(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    before = await balance_paisa(client, token)
    for payment_id in GRAND_TOTAL:
        response = await pay(client, token, payment_id)
        assert response.status_code == 200, response.text
        assert response.json()["credits_consumed"] * 100 == pytest.approx(GRAND_TOTAL[payment_id])
    assert await balance_paisa(client, token) == before - sum(GRAND_TOTAL.values())
    response = await client.post(DETAILS, json=body(token, TEST_CUSTOMER))
    assert response.status_code == 400, response.text
    assert response.json() == FIXTURES["details"]["no_pending_bills"]
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize(
    ("payment_id", "fields", "code", "field"),
    [
        # Decision V3: the bill's service_rate is not its price.
        ("1613143_PP", {"amount": 30.40}, "1010", "amount"),
        ("1613143_PP", {"amount": "34.36"}, "1010", "amount"),
        ("1613142_PP", {"amount": 34.35}, "1010", "amount"),
        ("1613142_PP", {"payment_id": "1613199_PP"}, "1010", "payment_id"),
        ("1613142_PP", {"payment_id": ""}, "1010", "payment_id"),
        ("1613142_PP", {"session_id": 123456789}, "4000", None),
        ("1613142_PP", {"reference": ""}, "1012", None),
    ],
)
async def test_a_refused_commit_charges_nothing_and_leaves_the_bill(
    client: AppClient,
    merchant: NewMerchant,
    payment_id: str,
    fields: dict[str, Any],
    code: str,
    field: str | None,
) -> None:
    token = merchant.test_token
    before = await balance_paisa(client, token)
    session_id = (await details(client, token))["session_id"]
    request = bill_commit(token, session_id, payment_id)
    request.update(fields)
    assert_refused(await client.post(COMMIT, json=request), code, field)
    assert await balance_paisa(client, token) == before
    assert pending(await details(client, token)) == list(GRAND_TOTAL)
    await assert_books_balance(client.gateway.db)


async def test_a_duplicate_reference_is_1013_on_a_fresh_session(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    first = bill_commit(token, (await details(client, token))["session_id"], "1613142_PP")
    paid = await client.post(COMMIT, json=first)
    assert paid.status_code == 200, paid.text
    before = await balance_paisa(client, token)
    for payment_id in ("1613142_PP", "1613144_PP"):
        again = bill_commit(token, (await details(client, token))["session_id"], payment_id)
        response = await client.post(COMMIT, json=again | {"reference": first["reference"]})
        assert_refused(response, "1013")
        assert response.json()["error_data"] == {"id": paid.json()["id"], "state": "Success"}
    # The first request sent again as it was: its session is spent by now.
    assert_refused(await client.post(COMMIT, json=first), "1013")
    assert await balance_paisa(client, token) == before
    assert pending(await details(client, token)) == ["1613143_PP", "1613144_PP", "1613145_PP"]


@pytest.mark.parametrize("customer", ["424242", 424242, "no-such-customer"])
async def test_an_unknown_customer_is_4000(
    client: AppClient, merchant: NewMerchant, customer: Any
) -> None:
    """Decision V4."""
    request = body(merchant.test_token, {"customer_id": customer})
    assert_refused(await client.post(DETAILS, json=request), "4000")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"customer_id": True}, "1010"),
        ({"customer_id": 9099.5}, "1010"),
        ({"customer_id": ""}, "1010"),
        ({"customer_id": None}, "1010"),
        ({"reference": None}, "1012"),
    ],
)
async def test_a_malformed_details_request_is_refused(
    client: AppClient, merchant: NewMerchant, fields: dict[str, Any], code: str
) -> None:
    request = body(merchant.test_token, TEST_CUSTOMER, **fields)
    assert_refused(await client.post(DETAILS, json=request), code)


async def test_a_bill_paid_through_another_session_is_refused_by_the_isp(
    client: AppClient, merchant: NewMerchant
) -> None:
    """Two details calls before a payment each offer the bill; once it is paid the other
    session's commit reaches the ISP, which refuses it: 1021, charging nothing."""
    token = merchant.test_token
    first, second = [(await details(client, token))["session_id"] for _ in range(2)]
    paid = await client.post(COMMIT, json=bill_commit(token, first, "1613145_PP"))
    assert paid.status_code == 200, paid.text
    before = await balance_paisa(client, token)
    late = await client.post(COMMIT, json=bill_commit(token, second, "1613145_PP"))
    assert_refused(late, "1021")
    assert await balance_paisa(client, token) == before
    await assert_books_balance(client.gateway.db)


def test_an_isps_customer_id_that_is_no_number_is_not_answered() -> None:
    """LIVE: customer_id is answered as a JSON integer, so an ISP's other id is 1018."""
    for odd in ("C-9099", "9" * 16, "\u0669\u0660\u0669\u0669"):
        customer = replace(vianet_updated.SANDBOX_USER, customer_id=odd)
        with pytest.raises(ServiceUnavailable):
            GROUP.render_details(customer, session_id=1)


def test_a_bill_field_an_isp_leaves_out_is_shown_empty() -> None:
    """LIVE: a bill without its own fields, or with them as numbers, stays payable."""
    bare = replace(vianet_updated.BILLS.durations[0], shown={"vat_amount": 30.55})
    customer = replace(
        vianet_updated.SANDBOX_USER, packages=(replace(vianet_updated.BILLS, durations=(bare,)),)
    )
    assert GROUP.render_details(customer, session_id=1)["bills"] == [
        {
            "payment_id": "1613142_PP",
            "service_name": "",
            "service_details": "FiberNet Home CRush (1 year)",
            "vat_amount": "",
            "grand_total": "277.98",
            "service_rate": "",
        }
    ]


def test_only_one_time_offers_are_bills() -> None:
    """A plan an ISP sends beside the bills is neither listed nor payable."""
    plan = Duration.in_rupees("1", "1 Month", 1000, 30)
    customer = replace(
        vianet_updated.SANDBOX_USER,
        packages=(Package("Home", 2, (plan,)),),
    )
    with pytest.raises(NothingToPay):
        GROUP.render_details(customer, session_id=1)
    query = CommitQuery(reference="r", amount_paisa=1000_00, duration_code="1", session_id=1)
    with pytest.raises(InvalidFields):
        GROUP.choose(customer, query)


# The scenario users of docs/SANDBOX.md, derived from the test data's customer.


@pytest.mark.parametrize(("username", "customer_id"), [("due-user", 9100), ("expired-user", 9101)])
async def test_the_scenario_users_have_the_documented_bills(
    client: AppClient, merchant: NewMerchant, username: str, customer_id: int
) -> None:
    answer = await details(client, merchant.test_token, username)
    assert answer["customer_id"] == customer_id
    same_shape(
        answer,
        FIXTURES["details"]["answer"],
        typed_only={"session_id", "customer_id", "customer_name"},
    )


async def test_the_refuse_user_is_1021_charged_nothing_and_keeps_the_bill(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    before = await balance_paisa(client, token)
    assert_refused(await pay(client, token, "1613142_PP", "refuse-user"), "1021")
    assert await balance_paisa(client, token) == before
    assert pending(await details(client, token, "refuse-user")) == list(GRAND_TOTAL)
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("username", ["slow-user", "flaky-user"])
async def test_an_unclear_answer_is_processing_then_success_and_the_bill_is_gone(
    client: AppClient, merchant: NewMerchant, username: str
) -> None:
    token = merchant.test_token
    before = await balance_paisa(client, token)
    session_id = (await details(client, token, username))["session_id"]
    request = bill_commit(token, session_id, "1613144_PP")
    response = await client.post(COMMIT, json=request)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert shape_differences(FIXTURES["commit"]["answer"], answer) == []
    assert answer["state"] == "Processing"
    assert answer["detail"] == {"message": "Payment is being processed"}
    assert answer["credits_consumed"] == 47.46
    assert await balance_paisa(client, token) == before - 4746, "the credits are held"

    async def success() -> bool:
        return await state_of(client, token, request["reference"]) == "Success"

    await eventually(success, timeout_s=15)
    assert await balance_paisa(client, token) == before - 4746
    assert "1613144_PP" not in pending(await details(client, token, username))
    await assert_books_balance(client.gateway.db)


async def test_a_lost_payment_is_processing_then_failed_refunded_and_the_bill_stays(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    before = await balance_paisa(client, token)
    session_id = (await details(client, token, "lost-user"))["session_id"]
    request = bill_commit(token, session_id, "1613144_PP")
    response = await client.post(COMMIT, json=request)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "Processing"

    async def failed() -> bool:
        return await state_of(client, token, request["reference"]) == "Failed"

    await eventually(failed, timeout_s=15)
    assert await balance_paisa(client, token) == before
    assert pending(await details(client, token, "lost-user")) == list(GRAND_TOTAL)
    await assert_books_balance(client.gateway.db)


# LIVE: the group's ISP system over the ISP protocol, served by isp-sim.


@pytest_asyncio.fixture
async def live_isp(client: AppClient) -> AsyncIterator[isp_sim.IspSimulator]:
    async with serving_isp_sim(client, vianet_updated.SLUG) as simulator:
        yield simulator


async def test_a_live_bill_is_paid_once_and_leaves_the_next_details(
    client: AppClient, live_isp: isp_sim.IspSimulator
) -> None:
    merchant = await new_merchant(client.gateway.db, live_rupees=1000)
    token = merchant.live_token
    answer = await details(client, token)
    same_shape(answer, FIXTURES["details"]["answer"], typed_only={"session_id", "customer_id"})
    request = bill_commit(token, answer["session_id"], "1613142_PP")
    response = await client.post(COMMIT, json=request)
    assert response.status_code == 200, response.text
    same_shape(response.json(), FIXTURES["commit"]["answer"], typed_only=PER_CALL)
    applied = live_isp.applied().body
    assert isinstance(applied, dict)
    mine = [p for p in applied["payments"] if p["payment_id"] == response.json()["id"]]
    assert mine == [
        {
            "payment_id": response.json()["id"],
            "group": vianet_updated.SLUG,
            "isp": vianet_updated.SLUG,
            "username": "9099",
            "amount_paisa": 27798,
            "receipt": mine[0]["receipt"],
        }
    ]
    assert await balance_paisa(client, token) == 100_000 - 27798
    assert pending(await details(client, token)) == ["1613143_PP", "1613144_PP", "1613145_PP"]
    # The ISP's record of the paid bill reaches a fresh session: the documented 4000.
    again = await pay(client, token, "1613142_PP")
    assert again.status_code == 400, again.text
    assert again.json() == FIXTURES["commit"]["already_paid"]
    assert await balance_paisa(client, token) == 100_000 - 27798
    await assert_books_balance(client.gateway.db)


async def test_a_live_refusal_is_1021_and_charges_nothing(
    client: AppClient, live_isp: isp_sim.IspSimulator
) -> None:
    merchant = await new_merchant(client.gateway.db, live_rupees=1000)
    token = merchant.live_token
    assert_refused(await pay(client, token, "1613142_PP", "refuse-user"), "1021")
    assert await balance_paisa(client, token) == 100_000
    assert_refused(await client.post(DETAILS, json=body(token, {"customer_id": 1})), "4000")
    await assert_books_balance(client.gateway.db)
