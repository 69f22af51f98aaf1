"""WorldLink V2 (khalti-docs/Internet/worldlink.md), over the API on both databases: the
three documented users' answers field by field and JSON type by JSON type (tests/services/
fixtures/worldlink_v2.json: the document's JSON), what each can pay (decisions W4-W6 and
ours, docs/services/worldlink-v2.md), each refusal charging nothing, the scenario users,
and the LIVE path against isp-sim."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bhuktani.merchants.service import NewMerchant
from bhuktani.sandbox import isp_sim
from bhuktani.services import worldlink_v2
from bhuktani.services.worldlink_v2 import GROUP
from tests.conftest import AppClient
from tests.services.support import (
    assert_refused,
    balance_paisa,
    same_shape,
    serving_isp_sim,
    state_of,
)
from tests.support import assert_books_balance, eventually, new_merchant

FIXTURES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "worldlink_v2.json").read_text()
)
DETAILS = f"/api/servicegroup/details/{GROUP.slug}/"
COMMIT = f"/api/servicegroup/commit/{GROUP.slug}/"
USERS = ("online_renew", "online_due_and_package", "online_due_payment")
# Per-call values: typed, not compared (decision G9).
PER_CALL = {"session_id", "id"}
PAID = FIXTURES["commit"]["answer"]


def documented(username: str) -> dict[str, Any]:
    answer: dict[str, Any] = FIXTURES["details"][username]["answer"]
    return answer


def body(token: str, **fields: Any) -> dict[str, Any]:
    return {"token": token, "reference": f"ref-{uuid.uuid4().hex}", **fields}


async def details(client: AppClient, token: str, username: str) -> dict[str, Any]:
    response = await client.post(DETAILS, json=body(token, username=username))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def pay(
    client: AppClient, token: str, username: str, amount: Any, **fields: Any
) -> tuple[dict[str, Any], Any]:
    """A details call, then a payment on its session (sent as a string, as the document
    quotes it, G2); returns the request and the response."""
    session_id = (await details(client, token, username))["session_id"]
    request = body(token, session_id=str(session_id), amount=amount, **fields)
    return request, await client.post(COMMIT, json=request)


def assert_paid(response: Any) -> None:
    assert response.status_code == 200, response.text
    same_shape(response.json(), PAID, typed_only=PER_CALL)


def test_the_examples_are_the_documents() -> None:
    assert GROUP.examples.details == FIXTURES["details"]["online_due_payment"]["request"]
    assert GROUP.examples.commit == FIXTURES["commit"]["request"]


@pytest.mark.parametrize("username", USERS)
async def test_each_documented_user_gets_its_documented_answer(
    client: AppClient, merchant: NewMerchant, username: str
) -> None:
    """The three shapes, exactly: subscribedPackageId against subscribed_package_id,
    package_options against available_renew_options, the trailing tab, "[Rs.12204]"."""
    request = body(merchant.test_token, **FIXTURES["details"][username]["request"])
    response = await client.post(DETAILS, json=request)
    assert response.status_code == 200, response.text
    same_shape(response.json(), documented(username), typed_only={"session_id"})


async def test_a_username_is_matched_without_case_or_surrounding_space(
    client: AppClient, merchant: NewMerchant
) -> None:
    answer = await details(client, merchant.test_token, "  Online_Renew ")
    same_shape(answer, documented("online_renew"), typed_only={"session_id"})


async def test_the_documented_payment_pays_the_due_once_and_spends_the_session(
    client: AppClient, merchant: NewMerchant
) -> None:
    """W6: online_due_payment pays 4950 without package_id. A paid due is gone: with
    nothing left to pay, its details answer 7000."""
    token = merchant.test_token
    before = await balance_paisa(client, token)
    request, response = await pay(client, token, "online_due_payment", 4950)
    assert_paid(response)
    assert "credits_consumed" not in response.json()  # G8: the documented shape
    assert await balance_paisa(client, token) == before - 495_000
    # A payment spends its session (G10): the same session, a new reference: 4000.
    again = dict(request, reference=f"ref-{uuid.uuid4().hex}")
    assert_refused(await client.post(COMMIT, json=again), "4000")
    after = await client.post(DETAILS, json=body(token, username="online_due_payment"))
    assert_refused(after, "7000")
    assert await balance_paisa(client, token) == before - 495_000
    await assert_books_balance(client.gateway.db)


async def test_a_due_paid_through_another_session_is_refused_by_the_isp(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    first = (await details(client, token, "online_due_payment"))["session_id"]
    second = (await details(client, token, "online_due_payment"))["session_id"]
    assert_paid(await client.post(COMMIT, json=body(token, session_id=first, amount=4950)))
    before = await balance_paisa(client, token)
    response = await client.post(COMMIT, json=body(token, session_id=second, amount=4950))
    assert_refused(response, "1021")
    assert await balance_paisa(client, token) == before
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("package_id", [None, 1888314, "1888314"])
async def test_online_renew_renews_its_subscribed_package_at_4915(
    client: AppClient, merchant: NewMerchant, package_id: Any
) -> None:
    """W5: the renewal of 1888314, with or without its package_id (an int or a string,
    G2); it adds the package's 90 days and can be paid again."""
    token = merchant.test_token
    before = await balance_paisa(client, token)
    fields = {} if package_id is None else {"package_id": package_id}
    for _ in range(2):
        _, response = await pay(client, token, "online_renew", 4915, **fields)
        assert_paid(response)
    assert await balance_paisa(client, token) == before - 2 * 491_500
    after = await details(client, token, "online_renew")
    same_shape(after, documented("online_renew") | {"days_remaining": 180}, {"session_id"})
    await assert_books_balance(client.gateway.db)


async def test_online_renew_switches_to_another_option_at_its_rate(
    client: AppClient, merchant: NewMerchant
) -> None:
    """Decision: a package_options entry is bought at its packageRate, no due added; the
    next details show it as the subscribed package, owing its rate."""
    token = merchant.test_token
    before = await balance_paisa(client, token)
    _, response = await pay(client, token, "online_renew", 5932, package_id="1888118")
    assert_paid(response)
    assert await balance_paisa(client, token) == before - 593_200
    after = await details(client, token, "online_renew")
    expected = documented("online_renew") | {
        "subscribed_package_name": "Fiber Smart home 2019-40mbps/3 mths(Renew)",
        "subscribedPackageId": 1888118,
        "days_remaining": 90,
        "amount_detail": [{"particular": "Internet", "amount": 5932}],
        "amount": 5932,
    }
    same_shape(after, expected, typed_only={"session_id"})
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("package_id", [None, 1888768, "1888768"])
async def test_online_due_and_package_buys_its_subscribed_package_without_the_due(
    client: AppClient, merchant: NewMerchant, package_id: Any
) -> None:
    """W4: 1888768 at 12204, the due (301) not added."""
    token = merchant.test_token
    before = await balance_paisa(client, token)
    fields = {} if package_id is None else {"package_id": package_id}
    _, response = await pay(client, token, "online_due_and_package", 12204, **fields)
    assert_paid(response)
    assert await balance_paisa(client, token) == before - 1_220_400
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("package_id", ["", None, " "])
async def test_an_empty_package_id_is_no_package_id(
    client: AppClient, merchant: NewMerchant, package_id: Any
) -> None:
    """The OPTIONAL package_id sent empty or null pays what the details asked for."""
    _, response = await pay(
        client, merchant.test_token, "online_due_payment", 4950, package_id=package_id
    )
    assert_paid(response)


@pytest.mark.parametrize(
    ("username", "fields", "code", "field"),
    [
        # W5: 5932 is not what online_renew owes, nor 1888314's rate.
        ("online_renew", {"amount": 5932}, "1010", "amount"),
        ("online_renew", {"amount": 5932, "package_id": 1888314}, "1010", "amount"),
        ("online_renew", {"amount": 4915, "package_id": 1888118}, "1010", "amount"),
        ("online_renew", {"amount": 4915, "package_id": 1888768}, "1010", "package_id"),
        ("online_renew", {"amount": 4915, "package_id": "1888314x"}, "1010", "package_id"),
        ("online_renew", {"amount": "4915.001"}, "1010", "amount"),
        # W4: the due added (12505), and an ineligible option at its bare rate or with
        # the due (the switch price left open: not for sale at any price).
        ("online_due_and_package", {"amount": 12505}, "1010", "amount"),
        ("online_due_and_package", {"amount": 12505, "package_id": 1888768}, "1010", "amount"),
        ("online_due_and_package", {"amount": 3220, "package_id": 1888767}, "1010", "package_id"),
        ("online_due_and_package", {"amount": 3521, "package_id": 1888767}, "1010", "package_id"),
        ("online_due_and_package", {"amount": 13108, "package_id": 18881068}, "1010", "package_id"),
        # W6: the due-only user cannot switch, not even to its own package's twin.
        ("online_due_payment", {"amount": 4950, "package_id": 1888314}, "1010", "package_id"),
        ("online_due_payment", {"amount": 4950, "package_id": 0}, "1010", "package_id"),
        ("online_due_payment", {"amount": 4915}, "1010", "amount"),
        ("online_due_payment", {"amount": 4950, "session_id": 123456789}, "4000", None),
        ("online_due_payment", {"amount": 4950, "reference": ""}, "1012", None),
        ("online_due_payment", {"amount": 4950, "session_id": "abc"}, "1010", "session_id"),
    ],
)
async def test_a_refused_commit_charges_nothing(
    client: AppClient,
    merchant: NewMerchant,
    username: str,
    fields: dict[str, Any],
    code: str,
    field: str | None,
) -> None:
    token = merchant.test_token
    before = await balance_paisa(client, token)
    session_id = (await details(client, token, username))["session_id"]
    request = body(token, session_id=session_id) | fields
    assert_refused(await client.post(COMMIT, json=request), code, field)
    assert await balance_paisa(client, token) == before
    # Nothing was paid: the user still owes what its details said.
    same_shape(await details(client, token, username), documented(username), {"session_id"})
    await assert_books_balance(client.gateway.db)


async def test_a_duplicate_reference_is_1013_on_a_fresh_session(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    first, paid = await pay(client, token, "online_renew", 4915)
    assert_paid(paid)
    before = await balance_paisa(client, token)
    fresh = (await details(client, token, "online_renew"))["session_id"]
    response = await client.post(COMMIT, json=dict(first, session_id=fresh))
    assert_refused(response, "1013")
    assert response.json()["error_data"] == {"id": paid.json()["id"], "state": "Success"}
    assert await balance_paisa(client, token) == before
    await assert_books_balance(client.gateway.db)


async def test_an_unknown_customer_is_the_documented_4000(
    client: AppClient, merchant: NewMerchant
) -> None:
    """G5: the document's 4000 on details; its text ("Customer not found.") is left open."""
    response = await client.post(DETAILS, json=body(merchant.test_token, username="nobody_here"))
    assert response.status_code == 400, response.text
    same_shape(response.json(), FIXTURES["customer_not_found"], typed_only={"details"})


@pytest.mark.parametrize(
    ("fields", "code"),
    [({"reference": ""}, "1012"), ({"username": ""}, "1010"), ({"username": None}, "1010")],
)
async def test_a_malformed_details_request_is_refused(
    client: AppClient, merchant: NewMerchant, fields: dict[str, Any], code: str
) -> None:
    request = body(merchant.test_token, username="online_renew") | fields
    assert_refused(await client.post(DETAILS, json=request), code)


# The scenario users of docs/SANDBOX.md: online_renew's shape under their own names.


@pytest.mark.parametrize("username", ["due-user", "expired-user"])
async def test_the_scenario_users_have_online_renews_shape(
    client: AppClient, merchant: NewMerchant, username: str
) -> None:
    answer = await details(client, merchant.test_token, username)
    assert answer["username"] == username
    same_shape(answer, documented("online_renew"), {"session_id", "username", "full_name"})


async def test_the_refuse_user_is_1021_and_charged_nothing(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    before = await balance_paisa(client, token)
    request, response = await pay(client, token, "refuse-user", 4915)
    assert_refused(response, "1021")
    assert await balance_paisa(client, token) == before
    assert await state_of(client, token, request["reference"]) == "Failed"
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("username", ["slow-user", "flaky-user"])
async def test_an_unclear_answer_is_processing_then_success(
    client: AppClient, merchant: NewMerchant, username: str
) -> None:
    token = merchant.test_token
    before = await balance_paisa(client, token)
    request, response = await pay(client, token, username, 4915)
    assert response.status_code == 200, response.text
    pending = PAID | {"state": "Processing", "message": "Transaction is being processed"}
    same_shape(response.json(), pending | {"detail": "Transaction pending"}, PER_CALL)
    assert await balance_paisa(client, token) == before - 491_500, "the credits are held"

    async def success() -> bool:
        return await state_of(client, token, request["reference"]) == "Success"

    await eventually(success, timeout_s=15)
    assert await balance_paisa(client, token) == before - 491_500
    assert (await details(client, token, username))["days_remaining"] == 90
    await assert_books_balance(client.gateway.db)


async def test_a_lost_payment_is_processing_then_failed_and_refunded_in_full(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    before = await balance_paisa(client, token)
    request, response = await pay(client, token, "lost-user", 4915)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "Processing"

    async def failed() -> bool:
        return await state_of(client, token, request["reference"]) == "Failed"

    await eventually(failed, timeout_s=15)
    assert await balance_paisa(client, token) == before
    assert (await details(client, token, "lost-user"))["days_remaining"] == 0
    await assert_books_balance(client.gateway.db)


# LIVE: the group's ISP system over the ISP protocol, served by isp-sim.


@pytest_asyncio.fixture
async def live_isp(client: AppClient) -> AsyncIterator[isp_sim.IspSimulator]:
    async with serving_isp_sim(client, worldlink_v2.SLUG) as simulator:
        yield simulator


def applied_to(simulator: isp_sim.IspSimulator, payment_id: int) -> list[dict[str, Any]]:
    applied = simulator.applied().body
    assert isinstance(applied, dict)
    return [p for p in applied["payments"] if p["payment_id"] == payment_id]


async def test_a_live_renewal_reaches_the_isp_once(
    client: AppClient, live_isp: isp_sim.IspSimulator
) -> None:
    merchant = await new_merchant(client.gateway.db, live_rupees=10_000)
    token = merchant.live_token
    same_shape(
        await details(client, token, "online_renew"), documented("online_renew"), {"session_id"}
    )
    _, response = await pay(client, token, "online_renew", 4915)
    assert_paid(response)
    payment_id = response.json()["id"]
    assert applied_to(live_isp, payment_id) == [
        {
            "payment_id": payment_id,
            "group": worldlink_v2.SLUG,
            "isp": worldlink_v2.SLUG,
            "username": "online_renew",
            "amount_paisa": 491_500,
            "receipt": applied_to(live_isp, payment_id)[0]["receipt"],
        }
    ]
    assert await balance_paisa(client, token) == 1_000_000 - 491_500
    assert (await details(client, token, "online_renew"))["days_remaining"] == 90
    await assert_books_balance(client.gateway.db)


async def test_a_live_due_is_paid_once(client: AppClient, live_isp: isp_sim.IspSimulator) -> None:
    merchant = await new_merchant(client.gateway.db, live_rupees=10_000)
    token = merchant.live_token
    first = (await details(client, token, "online_due_payment"))["session_id"]
    second = (await details(client, token, "online_due_payment"))["session_id"]
    assert_paid(await client.post(COMMIT, json=body(token, session_id=first, amount=4950)))
    # The ISP's record of the paid due: a second session's payment is refused, and the
    # next details have nothing to ask for.
    again = await client.post(COMMIT, json=body(token, session_id=second, amount=4950))
    assert_refused(again, "1021")
    assert_refused(
        await client.post(DETAILS, json=body(token, username="online_due_payment")), "7000"
    )
    assert await balance_paisa(client, token) == 1_000_000 - 495_000
    await assert_books_balance(client.gateway.db)


async def test_a_live_refusal_is_1021_and_charges_nothing(
    client: AppClient, live_isp: isp_sim.IspSimulator
) -> None:
    merchant = await new_merchant(client.gateway.db, live_rupees=10_000)
    token = merchant.live_token
    _, response = await pay(client, token, "refuse-user", 4915)
    assert_refused(response, "1021")
    assert await balance_paisa(client, token) == 1_000_000
    assert_refused(await client.post(DETAILS, json=body(token, username="nobody_here")), "4000")
    await assert_books_balance(client.gateway.db)
