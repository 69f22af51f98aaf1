"""The shape Konnect and Net Max share (services/customer_packages.py), for each of them,
over the API on both databases: the documented payment and what the next details call
shows, each refusal charging nothing, the new customer, the scenario users, and LIVE
against isp-sim. Each group's own examples are replayed in test_konnect.py and
test_net_max.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from bhuktani.isps.base import Duration, Package
from bhuktani.merchants.service import NewMerchant
from bhuktani.services.customer_packages import ACTIVE, FIRST_PAYMENT_AT_OFFICE
from bhuktani.services.konnect import GROUP
from tests.conftest import AppClient
from tests.services.customer_packages import (
    KONNECT,
    NET_MAX,
    Case,
    commit,
    details,
    end_date,
    same_answer,
    session_of,
)
from tests.services.support import (
    assert_refused,
    balance,
    body,
    fresh_reference,
    serving_isp_sim,
    state_of,
)
from tests.support import assert_books_balance, eventually, new_merchant

CASES = [pytest.param(KONNECT, id="konnect"), pytest.param(NET_MAX, id="net-max")]


@pytest.mark.parametrize("case", CASES)
async def test_the_documented_payment_pays_the_package_and_spends_the_session(
    client: AppClient, merchant: NewMerchant, case: Case
) -> None:
    token = merchant.test_token
    before = await balance(client, token)
    session_id = await session_of(client, case, token)
    response = await commit(client, case, token, session_id)
    assert response.status_code == 200, response.text
    same_answer(response.json(), case.paid)
    assert await balance(client, token) == before - case.price
    # A payment spends its session (G10): the same session again, a new reference: 4000.
    assert_refused(await commit(client, case, token, session_id), "4000")
    assert await balance(client, token) == before - case.price
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("case", CASES)
async def test_a_payment_shows_on_the_next_details(
    client: AppClient, merchant: NewMerchant, case: Case
) -> None:
    """The paid package becomes the subscription, its months are added to the end date,
    and the subscription is active; the packages on offer stay as they were."""
    token = merchant.test_token
    shown = await details(client, case, token)
    paid = await commit(client, case, token, str(shown["session_id"]))
    assert paid.status_code == 200, paid.text
    after = await details(client, case, token)
    package, price = case.priced
    assert end_date(after) - end_date(shown) == timedelta(days=price.days)
    assert after["customer"]["status"] == after["current_subscription"]["status"] == "Active"
    assert after["current_subscription"]["package"] == package.title
    assert after["packages"] == shown["packages"]
    assert after["due"] == shown["due"]


@pytest.mark.parametrize("case", CASES)
async def test_numbers_for_the_quoted_fields_are_accepted(
    client: AppClient, merchant: NewMerchant, case: Case
) -> None:
    """G2: the documents quote session_id and amount; their numbers mean the same."""
    token = merchant.test_token
    session_id = int(await session_of(client, case, token))
    request = body(token, case.commit, session_id=session_id, amount=int(case.price))
    response = await client.post(case.commit_path, json=request)
    assert response.status_code == 200, response.text
    same_answer(response.json(), case.paid)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ("amount + 1", "1010", "amount"),
        ("amount + 1 paisa", "1010", "amount"),
        ("unknown package", "1010", "package_id"),
        ("the other user's package", "1010", "package_id"),
        ("no package", "1010", "package_id"),
        ("unknown session", "4000", None),
        ("no reference", "1012", None),
    ],
)
async def test_a_refused_commit_charges_nothing(
    client: AppClient,
    merchant: NewMerchant,
    case: Case,
    change: str,
    code: str,
    field: str | None,
) -> None:
    fields: dict[str, Any] = {
        "amount + 1": {"amount": str(int(case.price) + 1)},
        "amount + 1 paisa": {"amount": f"{case.price + 0.01:.2f}"},
        "unknown package": {"package_id": "1-99999-9-1"},
        "the other user's package": {"package_id": case.foreign_package},
        "no package": {"package_id": ""},
        "unknown session": {"session_id": "123456789"},
        "no reference": {"reference": ""},
    }[change]
    token = merchant.test_token
    before = await balance(client, token)
    session_id = await session_of(client, case, token)
    request = body(token, case.commit, session_id=session_id)
    request.update(fields)
    assert_refused(await client.post(case.commit_path, json=request), code, field)
    assert await balance(client, token) == before
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("case", CASES)
async def test_a_duplicate_reference_is_1013_on_a_fresh_session(
    client: AppClient, merchant: NewMerchant, case: Case
) -> None:
    token = merchant.test_token
    first = body(token, case.commit, session_id=await session_of(client, case, token))
    paid = await client.post(case.commit_path, json=first)
    assert paid.status_code == 200, paid.text
    before = await balance(client, token)
    again = dict(first, session_id=await session_of(client, case, token))
    response = await client.post(case.commit_path, json=again)
    assert_refused(response, "1013")
    assert response.json()["error_data"] == {"id": paid.json()["id"], "state": "Success"}
    assert await balance(client, token) == before
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("case", CASES)
async def test_an_unknown_user_is_4000(
    client: AppClient, merchant: NewMerchant, case: Case
) -> None:
    request = body(merchant.test_token, case.details, username="nobody-here")
    assert_refused(await client.post(case.details_path, json=request), "4000")


@pytest.mark.parametrize("case", CASES)
async def test_details_without_a_reference_are_1012(
    client: AppClient, merchant: NewMerchant, case: Case
) -> None:
    request = body(merchant.test_token, case.details, reference="")
    assert_refused(await client.post(case.details_path, json=request), "1012")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("username", ["new", "New", "NEW", " new "])
async def test_a_new_customer_cannot_pay_online(
    client: AppClient, merchant: NewMerchant, case: Case, username: str
) -> None:
    """The documents' 4000 for the new user, in any case (K2: the users are written both
    New and new)."""
    request = body(merchant.test_token, case.details, username=username)
    response = await client.post(case.details_path, json=request)
    assert_refused(response, "4000")
    assert response.json()["details"] == FIRST_PAYMENT_AT_OFFICE


@pytest.mark.parametrize("case", CASES)
async def test_users_are_matched_in_any_case(
    client: AppClient, merchant: NewMerchant, case: Case
) -> None:
    """K2: lowercase is what the documents send; Active, EXPIRED answer the same."""
    token = merchant.test_token
    for username in ("active", "expired"):
        lower = await details(client, case, token, username=username)
        for written in (username.capitalize(), username.upper()):
            same_answer(await details(client, case, token, username=written), lower)


@pytest.mark.parametrize("case", CASES)
async def test_the_expired_and_due_scenario_users_are_the_active_users_data(
    client: AppClient, merchant: NewMerchant, case: Case
) -> None:
    """expired-user's plan has run out; due-user shows the ISP's due block as the active
    user does (the shape has no field for the sandbox's due flag)."""
    token = merchant.test_token
    active = await details(client, case, token, username="active")
    expired = await details(client, case, token, username="expired-user")
    assert expired["customer"]["status"] == expired["current_subscription"]["status"]
    assert expired["customer"]["status"] == "Expired"
    assert expired["packages"] == active["packages"]
    due = await details(client, case, token, username="due-user")
    assert (due["due"], due["packages"]) == (active["due"], active["packages"])


@pytest.mark.parametrize("case", CASES)
async def test_the_refuse_user_is_1021_and_charged_nothing(
    client: AppClient, merchant: NewMerchant, case: Case
) -> None:
    token = merchant.test_token
    before = await balance(client, token)
    session_id = await session_of(client, case, token, username="refuse-user")
    response = await commit(
        client, case, token, session_id, package_id="1-13286-5-3", amount="5999"
    )
    assert_refused(response, "1021")
    assert await balance(client, token) == before
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    ("username", "final"),
    [("slow-user", "Success"), ("flaky-user", "Success"), ("lost-user", "Failed")],
)
async def test_an_unclear_payment_is_processing_until_the_isp_answers(
    client: AppClient, merchant: NewMerchant, case: Case, username: str, final: str
) -> None:
    """The scenario users are the active user's data: they pay its 3 months."""
    token = merchant.test_token
    before = await balance(client, token)
    session_id = await session_of(client, case, token, username=username)
    reference = fresh_reference()
    response = await commit(
        client,
        case,
        token,
        session_id,
        package_id="1-13286-5-3",
        amount="5999",
        reference=reference,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["state"], answer["message"]) == ("Processing", "Transaction is being processed")
    assert answer["detail"] == "Payment is being processed."
    assert answer["credits_consumed"] == 5999.0
    assert await balance(client, token) == before - 5999.0, "the credits are held"

    async def settled() -> bool:
        return await state_of(client, token, reference) == final

    await eventually(settled, timeout_s=15)
    assert await balance(client, token) == before - (5999.0 if final == "Success" else 0)
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("case", CASES)
async def test_a_live_payment_reaches_the_isp_once(client: AppClient, case: Case) -> None:
    async with serving_isp_sim(client, case.group.slug) as isp:
        merchant = await new_merchant(client.gateway.db, live_rupees=20_000)
        token = merchant.live_token
        shown = await details(client, case, token)
        response = await commit(client, case, token, str(shown["session_id"]))
        assert response.status_code == 200, response.text
        same_answer(response.json(), case.paid)
        applied = isp.applied().body
        assert isinstance(applied, dict)
        mine = [p for p in applied["payments"] if p["payment_id"] == response.json()["id"]]
        assert mine == [
            {
                "payment_id": response.json()["id"],
                "group": case.group.slug,
                "isp": shown_isp(case),
                "username": case.details["username"],
                "amount_paisa": round(case.price * 100),
                "receipt": mine[0]["receipt"],
            }
        ]
        assert await balance(client, token) == 20_000 - case.price
        after = await details(client, case, token)
        assert end_date(after) - end_date(shown) == timedelta(days=case.priced[1].days)
        await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize("case", CASES)
async def test_a_live_new_customer_cannot_pay_online(client: AppClient, case: Case) -> None:
    async with serving_isp_sim(client, case.group.slug):
        merchant = await new_merchant(client.gateway.db, live_rupees=100)
        request = body(merchant.live_token, case.details, username="new")
        response = await client.post(case.details_path, json=request)
        assert_refused(response, "4000")
        assert response.json()["details"] == FIRST_PAYMENT_AT_OFFICE


def shown_isp(case: Case) -> str:
    """The ISP a details request names: its service_slug, or the group's one ISP."""
    isp: str = case.details.get("service_slug", case.group.isps[0])
    return isp


def test_what_an_isp_leaves_out_or_writes_as_a_number_is_shown_plainly() -> None:
    """A LIVE ISP's own fields may be missing or of another JSON type: a due amount sent as
    a number is shown as its text (never as no due), a missing mobile as "", a package
    not marked current as not current."""
    subscriber = replace(
        ACTIVE,
        shown={"due": {"amount": 500, "message": "Due Amount is 500"}},
        packages=(Package("Fiber", 1, (Duration.in_rupees("1-1-1-1", "Fiber - 1", 999, 30),)),),
    )
    answer = GROUP.render_details(subscriber, 1)
    assert answer["due"] == {"amount": "500", "message": "Due Amount is 500"}
    assert answer["customer"]["mobile"] == ""
    assert answer["packages"] == [
        {"package_id": "1-1-1-1", "package_name": "Fiber - 1", "amount": 999, "current": False}
    ]
    assert GROUP.render_details(replace(ACTIVE, shown={}), 1)["due"] == {
        "amount": "0",
        "message": "",
    }
