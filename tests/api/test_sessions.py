"""Sessions of HashCNet V2 details calls (spec/API.md section 6, 3.2) and what a payment
does to the subscriber the next details call shows (spec/SANDBOX.md)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bhuktani.api.app import create_app
from bhuktani.merchants.service import NewMerchant
from bhuktani.payments import sessions
from tests.conftest import AppClient
from tests.support import assert_books_balance, fast_settings, new_merchant

DETAILS = "/api/servicegroup/details/hashcnet-v2/"
COMMIT = "/api/servicegroup/commit/hashcnet-v2/"
ARROWNET_DETAILS = "/api/servicegroup/details/arrownet/"
ARROWNET_COMMIT = "/api/servicegroup/commit/arrownet/"
BALANCE = "/api/balance/"
START_DAYS = 314
FIBER_GOLD = "Fiber Gold"
FTTH = "FTTH-50Mbps"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def app_client(db_url: str, **overrides: Any) -> AsyncIterator[AppClient]:
    app = create_app(fast_settings(db_url, **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AppClient(transport=transport, base_url="http://gateway") as http:
            http.gateway = app.state.gateway
            yield http


async def details(
    client: AppClient, token: str, username: str = "jeetenaug4", isp: str = "vns"
) -> dict[str, Any]:
    body = {"token": token, "reference": unique("d"), "username": username, "service_slug": isp}
    response = await client.post(DETAILS, json=body)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def session_of(client: AppClient, token: str, username: str = "jeetenaug4") -> int:
    session_id: int = (await details(client, token, username))["session_id"]
    return session_id


async def commit(
    client: AppClient,
    token: str,
    session_id: int,
    *,
    package_code: int = 9,
    duration_code: str = "1",
    amount: Any = 999,
    reference: str | None = None,
) -> httpx.Response:
    body = {
        "token": token,
        "reference": reference or unique("p"),
        "session_id": session_id,
        "package_code": package_code,
        "duration_code": duration_code,
        "amount": amount,
    }
    return await client.post(COMMIT, json=body)


async def credits(client: AppClient, token: str) -> tuple[float, float]:
    response = await client.get(BALANCE, params={"token": token})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["credits_available"], body["credits_consumed"]


async def payments_of(client: AppClient, merchant_id: int) -> int:
    async with client.gateway.db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT COUNT(*) AS n FROM payments WHERE merchant_id = $1", merchant_id
        )
    assert row is not None
    return int(row["n"])


def assert_refused(response: httpx.Response, code: str, details: str | None = None) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] is False and body["state"] == "Error"
    assert body["error_code"] == code, body
    if details is not None:
        assert body["details"] == details


# Expiry.


async def test_session_expires_after_its_ttl(db_url: str) -> None:
    async with app_client(db_url, session_ttl_s=0) as client:
        merchant = await new_merchant(client.gateway.db)
        session_id = await session_of(client, merchant.test_token)
        response = await commit(client, merchant.test_token, session_id)
        assert_refused(response, "4000")
        assert "expired" in response.json()["details"].lower()
        assert await credits(client, merchant.test_token) == (1_000_000.0, 0.0)
        assert await payments_of(client, merchant.merchant_id) == 0


async def test_session_is_usable_until_its_ttl_then_expires(db_url: str) -> None:
    async with app_client(db_url, session_ttl_s=1) as client:
        merchant = await new_merchant(client.gateway.db)
        fresh = await session_of(client, merchant.test_token)
        later = await session_of(client, merchant.test_token)
        paid = await commit(client, merchant.test_token, fresh)
        assert paid.status_code == 200, paid.text
        await asyncio.sleep(1.1)
        response = await commit(client, merchant.test_token, later)
        assert_refused(response, "4000")
        assert "expired" in response.json()["details"].lower()
        assert await credits(client, merchant.test_token) == (1_000_000.0 - 999.0, 999.0)
        await assert_books_balance(client.gateway.db)


async def test_default_session_lifetime_is_thirty_minutes(
    client: AppClient, merchant: NewMerchant
) -> None:
    assert client.gateway.settings.session_ttl_s == 30 * 60
    session_id = await session_of(client, merchant.test_token)
    async with client.gateway.db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT expires_ms - created_ms AS ttl_ms FROM sessions WHERE id = $1", session_id
        )
    assert row is not None and int(row["ttl_ms"]) == 30 * 60 * 1000


# Spending.


async def test_session_is_spent_by_a_successful_payment(
    client: AppClient, merchant: NewMerchant
) -> None:
    session_id = await session_of(client, merchant.test_token)
    first = await commit(client, merchant.test_token, session_id)
    assert first.status_code == 200, first.text
    second = await commit(client, merchant.test_token, session_id)
    assert_refused(second, "4000", "Session already used for a payment")
    assert await credits(client, merchant.test_token) == (1_000_000.0 - 999.0, 999.0)
    assert await payments_of(client, merchant.merchant_id) == 1
    await assert_books_balance(client.gateway.db)


async def test_session_is_spent_once_when_two_commits_race(
    client: AppClient, merchant: NewMerchant
) -> None:
    session_id = await session_of(client, merchant.test_token)
    responses = await asyncio.gather(
        *(commit(client, merchant.test_token, session_id) for _ in range(4))
    )
    assert sorted(r.status_code for r in responses) == [200, 400, 400, 400]
    for response in responses:
        if response.status_code == 400:
            assert_refused(response, "4000", "Session already used for a payment")
    assert await credits(client, merchant.test_token) == (1_000_000.0 - 999.0, 999.0)
    await assert_books_balance(client.gateway.db)


async def test_refused_payment_gives_the_session_back(
    client: AppClient, merchant: NewMerchant
) -> None:
    session_id = await session_of(client, merchant.test_token, "refuse-user")
    first = await commit(client, merchant.test_token, session_id)
    assert_refused(first, "1021")
    # The same session again, with a new reference: refused by the ISP again, not spent.
    second = await commit(client, merchant.test_token, session_id)
    assert_refused(second, "1021")
    assert await credits(client, merchant.test_token) == (1_000_000.0, 0.0)
    await assert_books_balance(client.gateway.db)


async def test_validation_error_leaves_the_session_usable(
    client: AppClient, merchant: NewMerchant
) -> None:
    session_id = await session_of(client, merchant.test_token)
    wrong = await commit(client, merchant.test_token, session_id, amount=998)
    assert_refused(wrong, "1010")
    right = await commit(client, merchant.test_token, session_id)
    assert right.status_code == 200, right.text
    await assert_books_balance(client.gateway.db)


# Binding to the merchant and the environment.


async def test_another_merchants_session_is_refused_like_an_unknown_one(
    client: AppClient, merchant: NewMerchant
) -> None:
    other = await new_merchant(client.gateway.db)
    theirs = await session_of(client, other.test_token)
    stolen = await commit(client, merchant.test_token, theirs)
    assert_refused(stolen, "4000", "Invalid session")
    unknown = await commit(client, merchant.test_token, 6466)
    assert_refused(unknown, "4000", "Invalid session")
    # Nothing in the answer tells a foreign session from one that never existed.
    assert stolen.json() == unknown.json()
    assert await credits(client, merchant.test_token) == (1_000_000.0, 0.0)
    assert await credits(client, other.test_token) == (1_000_000.0, 0.0)
    assert await payments_of(client, merchant.merchant_id) == 0
    assert await payments_of(client, other.merchant_id) == 0


async def test_test_session_is_refused_with_the_live_token(
    client: AppClient, merchant: NewMerchant
) -> None:
    session_id = await session_of(client, merchant.test_token)
    response = await commit(client, merchant.live_token, session_id)
    # LIVE does not see TEST's sessions: refused like an unknown one.
    assert_refused(response, "4000", "Invalid session")
    assert await payments_of(client, merchant.merchant_id) == 0
    # The session was not touched: TEST still pays with it.
    paid = await commit(client, merchant.test_token, session_id)
    assert paid.status_code == 200, paid.text
    await assert_books_balance(client.gateway.db)


async def test_session_ids_are_integers_below_2_53_and_not_sequential(
    client: AppClient, merchant: NewMerchant
) -> None:
    ids = [await session_of(client, merchant.test_token) for _ in range(20)]
    for session_id in ids:
        assert type(session_id) is int
        assert 0 < session_id < 2**53
    assert len(set(ids)) == len(ids)
    steps = [b - a for a, b in itertools.pairwise(ids)]
    # Random draws: no run of small steps that would tell a competitor the volume.
    assert not all(0 < step <= 1000 for step in steps), ids
    assert max(ids) - min(ids) > 2**32, ids


async def test_a_session_id_drawn_twice_is_drawn_again(
    client: AppClient, merchant: NewMerchant, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = await session_of(client, merchant.test_token)
    fresh = taken + 1 if taken + 1 < 2**53 else taken - 1
    draws = iter([taken, taken, fresh])
    monkeypatch.setattr(sessions, "random_id", lambda: next(draws))
    # The id is taken twice, and the third draw is used: no error, one session each.
    assert await session_of(client, merchant.test_token) == fresh
    assert next(draws, None) is None


# Package code 9 names two packages: the amount picks (spec/API.md 3.2, Decision).


@pytest.mark.parametrize(
    ("duration_code", "amount", "plan", "days_added"),
    [
        ("1", 999, FTTH, 30),
        ("1", 1232, FIBER_GOLD, 30),
        ("3", 2800, FTTH, 90),
        ("3", 7876, FIBER_GOLD, 90),
        ("6", 15750, FIBER_GOLD, 180),
        ("12", 15750, FIBER_GOLD, 360),
        ("12", 9999, FTTH, 360),
        ("custom_2", 1634, FIBER_GOLD, 15),
        ("custom_3", 859, FIBER_GOLD, 60),
        ("custom_1", 13500, FTTH, 360),
    ],
)
async def test_amount_picks_the_package_and_the_payment_changes_the_next_details(
    client: AppClient,
    merchant: NewMerchant,
    duration_code: str,
    amount: int,
    plan: str,
    days_added: int,
) -> None:
    before = await details(client, merchant.test_token)
    assert before["current_plan"] == FIBER_GOLD
    assert before["days_remaining"] == START_DAYS
    response = await commit(
        client,
        merchant.test_token,
        before["session_id"],
        duration_code=duration_code,
        amount=amount,
    )
    assert response.status_code == 200, response.text
    assert response.json()["credits_consumed"] == float(amount)
    after = await details(client, merchant.test_token)
    assert after["current_plan"] == plan
    assert after["days_remaining"] == START_DAYS + days_added
    # The plan's prices shown are the new plan's.
    paid_package = next(p for p in after["available_packages"] if p["title"] == plan)
    assert [d["total_cost"] for d in after["plan_detail"]] == [
        float(d["total_cost"]) for d in paid_package["duration"]
    ]
    await assert_books_balance(client.gateway.db)


async def test_payments_add_up_in_days_remaining(client: AppClient, merchant: NewMerchant) -> None:
    for duration_code, amount in (("1", 999), ("custom_2", 1634), ("custom_1", 13500)):
        session_id = await session_of(client, merchant.test_token)
        response = await commit(
            client, merchant.test_token, session_id, duration_code=duration_code, amount=amount
        )
        assert response.status_code == 200, response.text
    after = await details(client, merchant.test_token)
    assert after["days_remaining"] == START_DAYS + 30 + 15 + 360
    assert after["current_plan"] == FTTH
    await assert_books_balance(client.gateway.db)


async def test_package_code_9_with_an_amount_of_neither_package_is_refused(
    client: AppClient, merchant: NewMerchant
) -> None:
    session_id = await session_of(client, merchant.test_token)
    response = await commit(client, merchant.test_token, session_id, amount=1000)
    assert_refused(response, "1010")
    assert list(response.json()["error_data"]) == ["amount"]
    assert await payments_of(client, merchant.merchant_id) == 0


async def test_failed_payment_changes_nothing(client: AppClient, merchant: NewMerchant) -> None:
    before = await details(client, merchant.test_token, "refuse-user")
    response = await commit(client, merchant.test_token, before["session_id"])
    assert_refused(response, "1021")
    after = await details(client, merchant.test_token, "refuse-user")
    assert after["current_plan"] == before["current_plan"]
    assert after["days_remaining"] == before["days_remaining"]
    await assert_books_balance(client.gateway.db)


async def test_payment_on_one_isp_leaves_the_same_username_on_another_unchanged(
    client: AppClient, merchant: NewMerchant
) -> None:
    session_id = await session_of(client, merchant.test_token)
    assert (await commit(client, merchant.test_token, session_id)).status_code == 200
    assert (await details(client, merchant.test_token))["days_remaining"] == START_DAYS + 30
    elsewhere = await details(client, merchant.test_token, isp="techminds")
    assert elsewhere["days_remaining"] == START_DAYS
    assert elsewhere["current_plan"] == FIBER_GOLD
    await assert_books_balance(client.gateway.db)


async def test_arrownet_payment_adds_its_months_to_the_next_details(
    client: AppClient, merchant: NewMerchant
) -> None:
    body = {"token": merchant.test_token, "username": "Pradhanang"}
    before = (await client.post(ARROWNET_DETAILS, json=body)).json()
    assert before["days_remaining"] == 464
    pay = body | {"reference": unique("a"), "amount": "5085.00", "duration": 3}
    response = await client.post(ARROWNET_COMMIT, json=pay)
    assert response.status_code == 200, response.text
    after = (await client.post(ARROWNET_DETAILS, json=body)).json()
    assert after["days_remaining"] == 464 + 90
    assert after["current_plan"] == "50Mbps"
    await assert_books_balance(client.gateway.db)
