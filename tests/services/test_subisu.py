"""Subisu (khalti-docs/Internet/subisu.md), over the API on both databases: the four test
users' details field by field and JSON type by JSON type, the four kinds of payment, the
document's three refusals, each refusal charging nothing, the scenario users, and the LIVE
path against isp-sim. The document's JSON is tests/services/fixtures/subisu.json."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bhuktani.errors import CannotFulfil, InvalidFields, IspRefusedField
from bhuktani.isps.base import Subscriber
from bhuktani.merchants.service import NewMerchant
from bhuktani.sandbox import isp_sim
from bhuktani.services import subisu
from bhuktani.services.subisu import GROUP
from tests.conftest import AppClient
from tests.seeds import shape_differences
from tests.services.support import balance, fresh_reference, same_shape, serving_isp_sim
from tests.support import assert_books_balance, eventually, new_merchant

FIXTURES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "subisu.json").read_text()
)
DOCUMENTED = FIXTURES["details"]["answers"]
REQUESTS = FIXTURES["commit"]["requests"]
ERRORS = FIXTURES["commit"]["errors"]
DETAILS = "/api/servicegroup/details/subisu/"
COMMIT = "/api/servicegroup/commit/subisu/"
# Per call values: typed, not compared (decision G9); a receipt's value is free (G6).
PER_CALL = {"session_id", "id", "credits_available"}
RECEIPT = {"detail"}
BASE = subisu.SANDBOX_USER.username
# khaltivideo's TV plan of the STB whose name has a space.
SAMPLE_11 = {"amount": "3", "offer_name": "Video offer child tests", "stb": "Sample 11"}


def comparable(answer: dict[str, Any]) -> dict[str, Any]:
    """A details answer without its session id, tv_details as a set (decision S4)."""
    kept = {k: v for k, v in answer.items() if k != "session_id"}
    listed = kept["plan_detail_list"]["plan_detail_list"]
    if isinstance(listed, dict) and "tv_details" in listed:
        unique = {json.dumps(entry, sort_keys=True) for entry in listed["tv_details"]}
        kept["plan_detail_list"] = {
            **kept["plan_detail_list"],
            "plan_detail_list": {**listed, "tv_details": sorted(unique)},
        }
    return kept


async def details(client: AppClient, token: str, username: str) -> dict[str, Any]:
    request = {"token": token, "reference": fresh_reference(), "username": username}
    response = await client.post(DETAILS, json=request)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def commit(
    client: AppClient, token: str, username: str, example: dict[str, Any], **fields: Any
) -> Any:
    """The example paid on a session of the user's own details call."""
    session_id = (await details(client, token, username))["session_id"]
    request = {"token": token, "reference": fresh_reference(), **example}
    return await client.post(COMMIT, json={**request, "session_id": session_id, **fields})


def assert_refused(response: Any, code: str, field: str | None = None) -> None:
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error_code"] == code, answer
    assert answer["status"] is False and answer["state"] == "Error", answer
    if field is not None:
        assert field in answer["error_data"], answer


def test_the_examples_are_the_documents() -> None:
    assert GROUP.examples.details == FIXTURES["details"]["request"]
    assert GROUP.examples.commit == FIXTURES["commit"]["request"] == REQUESTS["internet_payment"]


@pytest.mark.parametrize("username", sorted(DOCUMENTED))
async def test_each_test_user_gets_its_documented_details(
    client: AppClient, merchant: NewMerchant, username: str
) -> None:
    answer = await details(client, merchant.test_token, username)
    documented = DOCUMENTED[username]
    assert shape_differences(documented, answer) == [], answer
    assert isinstance(answer["session_id"], int)
    assert comparable(answer) == comparable(documented)


async def test_usernames_are_matched_without_regard_to_case(
    client: AppClient, merchant: NewMerchant
) -> None:
    answer = await details(client, merchant.test_token, " KhaltiVideo ")
    assert comparable(answer) == comparable(DOCUMENTED["khaltivideo"])


# The four kinds of payment.


@pytest.mark.parametrize(
    ("kind", "username", "rupees"),
    [
        ("tv_payment", "paypoint_video", 10),  # its one STB with plans (S5)
        ("internet_payment", "khaltivideo", 10),  # internet + tv (S1)
        ("offer_payment", "khaltioffer", 10),
    ],
)
async def test_a_documented_payment_pays_its_plan_and_spends_the_session(
    client: AppClient, merchant: NewMerchant, kind: str, username: str, rupees: int
) -> None:
    token = merchant.test_token
    before = await balance(client, token)
    session_id = (await details(client, token, username))["session_id"]
    request = {"token": token, "reference": fresh_reference(), **REQUESTS[kind]}
    response = await client.post(COMMIT, json={**request, "session_id": session_id})
    assert response.status_code == 200, response.text
    answer = response.json()
    documented = {**FIXTURES["commit"]["answer"], "credits_consumed": rupees}
    same_shape(answer, documented, typed_only=PER_CALL | RECEIPT)
    assert isinstance(answer["detail"], str) and answer["detail"]
    assert await balance(client, token) == before - rupees
    # A payment spends its session (G10): the same session, a new reference: 4000.
    again = {**request, "session_id": session_id, "reference": fresh_reference()}
    assert_refused(await client.post(COMMIT, json=again), "4000")
    assert await balance(client, token) == before - rupees
    await assert_books_balance(client.gateway.db)


async def test_an_internet_payment_works_for_the_internet_user_too(
    client: AppClient, merchant: NewMerchant
) -> None:
    """Decision S1: internet payments are for every subscriber who has internet plans."""
    example = {"amount": "4000", "offer_name": "10Mbps 12Months BPKIHS"}
    response = await commit(client, merchant.test_token, "khaltiinternet", example)
    assert response.status_code == 200, response.text
    assert response.json()["credits_consumed"] == 4000


async def test_a_tv_plan_of_the_stb_with_a_space_in_its_name_is_paid(
    client: AppClient, merchant: NewMerchant
) -> None:
    response = await commit(client, merchant.test_token, "khaltivideo", SAMPLE_11)
    assert response.status_code == 200, response.text
    assert response.json()["credits_consumed"] == 3


async def test_the_outstanding_payment_pays_the_dues_and_the_details_show_none_left(
    client: AppClient, merchant: NewMerchant
) -> None:
    """The base user owes 1232: the document's success example, replayed exactly (G7)."""
    token = merchant.test_token
    before = await balance(client, token)
    assert (await details(client, token, BASE))["outstanding_amount"] == "1232.00"
    example = {**REQUESTS["outstanding_payment"], "amount": "1232.00"}
    response = await commit(client, token, BASE, example)
    assert response.status_code == 200, response.text
    same_shape(response.json(), FIXTURES["commit"]["answer"], typed_only=PER_CALL | RECEIPT)
    assert await balance(client, token) == before - 1232
    assert (await details(client, token, BASE))["outstanding_amount"] == "0.00"
    again = await commit(client, token, BASE, example)
    assert_refused(again, "4000")
    assert again.json()["details"] == subisu.NO_DUES
    assert await balance(client, token) == before - 1232
    await assert_books_balance(client.gateway.db)


# The document's refusals.


def assert_documented_error(response: Any, documented: dict[str, Any]) -> None:
    assert response.status_code == 400, response.text
    assert response.json() == documented


async def test_the_outstanding_payment_without_dues_is_the_documented_4000(
    client: AppClient, merchant: NewMerchant
) -> None:
    """Decision S3: the "0.00" it sends is read, and the answer is the document's."""
    before = await balance(client, merchant.test_token)
    for username in DOCUMENTED:
        response = await commit(
            client, merchant.test_token, username, REQUESTS["outstanding_payment"]
        )
        assert_documented_error(response, ERRORS["no_outstanding_dues"])
    assert await balance(client, merchant.test_token) == before


async def test_buying_a_plan_again_is_the_documented_4000_and_the_details_still_list_it(
    client: AppClient, merchant: NewMerchant
) -> None:
    """Decision S6: a bought plan is a future plan."""
    token = merchant.test_token
    for kind, username in (
        ("tv_payment", "paypoint_video"),
        ("internet_payment", "khaltivideo"),
        ("offer_payment", "khaltioffer"),
    ):
        paid = await commit(client, token, username, REQUESTS[kind])
        assert paid.status_code == 200, paid.text
        before = await balance(client, token)
        assert comparable(await details(client, token, username)) == comparable(
            DOCUMENTED[username]
        )
        again = await commit(client, token, username, REQUESTS[kind])
        assert_documented_error(again, ERRORS["future_plan_exists"])
        assert await balance(client, token) == before
    await assert_books_balance(client.gateway.db)


@pytest.mark.parametrize(
    "fields",
    [
        {"amount": "11"},  # the plan's name, another amount
        {"offer_name": "10Mbps 12Months BPKIHS"},  # another plan's name, this amount
        {"offer_name": "No Such Plan"},
        {"offer_name": "Video Tests Plan 1M", "stb": "ABCC2C1D07B01A20", "amount": "3"},
    ],
)
async def test_an_offer_name_that_does_not_match_the_amount_is_1011(
    client: AppClient, merchant: NewMerchant, fields: dict[str, Any]
) -> None:
    """Decision S2: code, status and state as documented; the field message is in
    error_data under offer_name (and in details), as every field refusal of ours."""
    before = await balance(client, merchant.test_token)
    response = await commit(
        client, merchant.test_token, "khaltivideo", REQUESTS["internet_payment"], **fields
    )
    assert_refused(response, ERRORS["offer_name_mismatch"]["error_code"], "offer_name")
    answer = response.json()
    assert answer["message"] == ERRORS["offer_name_mismatch"]["message"]
    assert answer["error_data"] == {"offer_name": [subisu.OFFER_MISMATCH]}
    assert subisu.OFFER_MISMATCH in answer["details"]
    assert await balance(client, merchant.test_token) == before
    await assert_books_balance(client.gateway.db)


def plain(kind: str) -> dict[str, Any]:
    """A documented commit without its session, which a test's details call opens."""
    return {k: v for k, v in REQUESTS[kind].items() if k != "session_id"}


@pytest.mark.parametrize(
    ("username", "example", "code", "field"),
    [
        # paypoint_video's second STB has no plan to buy (S5).
        ("paypoint_video", {**plain("tv_payment"), "stb": "TEST0001"}, "1010", "stb"),
        # A TV plan named without its STB.
        ("paypoint_video", {"amount": "10", "offer_name": "Video Tests Plan 1M"}, "1010", "stb"),
        ("khaltiinternet", plain("tv_payment"), "1010", "stb"),
        ("khaltivideo", {"amount": "10"}, "1010", "offer_name"),
        ("khaltivideo", {**plain("internet_payment"), "amount": "0.00"}, "1010", "amount"),
        ("khaltivideo", {**plain("internet_payment"), "amount": "-10"}, "1010", "amount"),
        ("khaltivideo", {"amount": "10", "renew_type": "renew"}, "1010", "renew_type"),
        (BASE, {**plain("outstanding_payment"), "amount": "1231.99"}, "1010", "amount"),
        ("khaltivideo", {**plain("internet_payment"), "session_id": 123456789}, "4000", None),
        ("khaltivideo", {**plain("internet_payment"), "reference": ""}, "1012", None),
    ],
)
async def test_a_refused_commit_charges_nothing(
    client: AppClient,
    merchant: NewMerchant,
    username: str,
    example: dict[str, Any],
    code: str,
    field: str | None,
) -> None:
    before = await balance(client, merchant.test_token)
    session_id = (await details(client, merchant.test_token, username))["session_id"]
    request = {"token": merchant.test_token, "reference": fresh_reference()}
    request |= {"session_id": session_id, **example}
    assert_refused(await client.post(COMMIT, json=request), code, field)
    assert await balance(client, merchant.test_token) == before
    await assert_books_balance(client.gateway.db)


async def test_a_commit_and_a_details_call_without_a_reference_are_1012(
    client: AppClient, merchant: NewMerchant
) -> None:
    """Decision G3: the document's requests leave it out; it is always required."""
    token = merchant.test_token
    session_id = (await details(client, token, "khaltivideo"))["session_id"]
    request = {"token": token, **REQUESTS["internet_payment"], "session_id": session_id}
    assert_refused(await client.post(COMMIT, json=request), "1012")
    no_reference = {"token": token, "username": "khaltivideo"}
    assert_refused(await client.post(DETAILS, json=no_reference), "1012")


async def test_a_duplicate_reference_is_1013_on_a_fresh_session(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    reference = fresh_reference()
    paid = await commit(
        client, token, "khaltivideo", {**REQUESTS["internet_payment"], "reference": reference}
    )
    assert paid.status_code == 200, paid.text
    before = await balance(client, token)
    again = await commit(
        client, token, "khaltivideo", {**REQUESTS["internet_payment"], "reference": reference}
    )
    assert_refused(again, "1013")
    assert again.json()["error_data"] == {"id": paid.json()["id"], "state": "Success"}
    assert await balance(client, token) == before


async def test_an_unknown_user_is_4000(client: AppClient, merchant: NewMerchant) -> None:
    """Decision G5."""
    request = {"token": merchant.test_token, "reference": fresh_reference()}
    response = await client.post(DETAILS, json={**request, "username": "nobody-here"})
    assert_refused(response, "4000")


# The choice of a plan, without the API.


def purchase(offer_name: str, rupees: int, stb: str | None = None) -> subisu.Purchase:
    return subisu.Purchase(
        reference="r",
        amount_paisa=rupees * 100,
        duration_code="",
        session_id=1,
        offer_name=offer_name,
        stb=stb,
    )


@pytest.mark.parametrize(
    ("subscriber", "offer_name"),
    [
        (subisu.KHALTI_INTERNET, "Internet Northbound"),
        (subisu.KHALTI_VIDEO, "Selfcare Renew eSewa"),
    ],
)
def test_two_plans_of_one_name_and_amount_are_one_purchase(
    subscriber: Subscriber, offer_name: str
) -> None:
    """Decision: the first listed is paid; once it is, the pair is a plan already bought."""
    package, duration = GROUP.choose(subscriber, purchase(offer_name, 10))
    assert (package.title, duration.code) == (subisu.INTERNET, "internet-1")
    twins = [d for d in package.durations if (d.title, d.amount_paisa) == (offer_name, 1000)]
    assert len(twins) == 2
    for bought in twins:
        after = replace(subscriber, paid=(bought.code,))
        with pytest.raises(CannotFulfil, match=re.escape(subisu.FUTURE_PLAN_EXISTS)):
            GROUP.choose(after, purchase(offer_name, 10))


def test_a_tv_plan_is_chosen_by_its_stb() -> None:
    package, duration = GROUP.choose(
        subisu.KHALTI_VIDEO, purchase("Video Tests Plan 1M", 10, "ABCC2C1D07B01A20")
    )
    assert (package.title, duration.shown["stb"]) == (subisu.TV, "ABCC2C1D07B01A20")
    with pytest.raises(IspRefusedField):
        GROUP.choose(subisu.KHALTI_VIDEO, purchase("Video Tests Plan 1M", 10, "Sample 11"))
    with pytest.raises(InvalidFields):
        GROUP.choose(subisu.KHALTI_VIDEO, purchase("Video Tests Plan 1M", 10, "NO-SUCH-STB"))


def test_every_code_is_a_code() -> None:
    for subscriber in GROUP.sandbox_subscribers:
        for _, duration in subscriber.offers():
            assert re.fullmatch(r"[A-Za-z0-9_.:-]{1,32}", duration.code), duration


# The scenario users (docs/SANDBOX.md), derived from the base user.


async def test_the_due_user_owes_what_the_base_user_owes(
    client: AppClient, merchant: NewMerchant
) -> None:
    answer = await details(client, merchant.test_token, "due-user")
    assert answer["outstanding_amount"] == "1232.00"
    assert answer["user_id"] == "due-user"
    assert answer["plan_detail_list"]["plan_type"] == "internet + tv"


async def test_the_refuse_user_is_1021_and_charged_nothing(
    client: AppClient, merchant: NewMerchant
) -> None:
    before = await balance(client, merchant.test_token)
    response = await commit(
        client, merchant.test_token, "refuse-user", REQUESTS["internet_payment"]
    )
    assert_refused(response, "1021")
    assert await balance(client, merchant.test_token) == before
    await assert_books_balance(client.gateway.db)


async def state_of(client: AppClient, token: str, payment_id: int, reference: str) -> str:
    response = await client.get(
        "/api/service/status/", params={"token": token, "reference": reference}
    )
    assert response.json()["response_id"] == payment_id
    state: str = response.json()["state"]
    return state


@pytest.mark.parametrize(
    ("username", "final"),
    [("slow-user", "Success"), ("flaky-user", "Success"), ("lost-user", "Failed")],
)
async def test_an_unclear_payment_is_processing_then_final(
    client: AppClient, merchant: NewMerchant, username: str, final: str
) -> None:
    token = merchant.test_token
    before = await balance(client, token)
    reference = fresh_reference()
    example = {**REQUESTS["internet_payment"], "reference": reference}
    response = await commit(client, token, username, example)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["state"], answer["detail"]) == ("Processing", subisu.PENDING_DETAIL)
    assert answer["credits_consumed"] == 10
    assert await balance(client, token) == before - 10, "the credits are held"

    async def settled() -> bool:
        return await state_of(client, token, answer["id"], reference) == final

    await eventually(settled, timeout_s=15)
    assert await balance(client, token) == before - (10 if final == "Success" else 0)
    await assert_books_balance(client.gateway.db)


# LIVE: the group's ISP system over the ISP protocol, served by isp-sim.


@pytest_asyncio.fixture
async def live_isp(client: AppClient) -> AsyncIterator[isp_sim.IspSimulator]:
    async with serving_isp_sim(client, subisu.SLUG) as simulator:
        yield simulator


async def test_a_live_payment_reaches_the_isp_once_and_a_bought_plan_is_refused_after(
    client: AppClient, live_isp: isp_sim.IspSimulator
) -> None:
    merchant = await new_merchant(client.gateway.db, live_rupees=100)
    token = merchant.live_token
    answer = await details(client, token, "khaltivideo")
    assert comparable(answer) == comparable(DOCUMENTED["khaltivideo"])
    response = await commit(client, token, "khaltivideo", SAMPLE_11)
    assert response.status_code == 200, response.text
    applied = live_isp.applied().body
    assert isinstance(applied, dict)
    mine = [p for p in applied["payments"] if p["payment_id"] == response.json()["id"]]
    assert mine == [
        {
            "payment_id": response.json()["id"],
            "group": subisu.SLUG,
            "isp": subisu.SLUG,
            "username": "khaltivideo",
            "amount_paisa": 300,
            "receipt": response.json()["detail"],
        }
    ]
    assert await balance(client, token) == 97.0
    again = await commit(client, token, "khaltivideo", SAMPLE_11)
    assert_documented_error(again, ERRORS["future_plan_exists"])
    assert await balance(client, token) == 97.0
    await assert_books_balance(client.gateway.db)
