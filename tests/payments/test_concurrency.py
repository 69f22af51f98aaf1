"""A payment never executes twice and credits are never promised twice, whatever the
concurrency: many requests at the same instant against `bhuktani serve` over real
connections, with one process and with two sharing the database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bhuktani.store import Database
from tests.support import Server, assert_books_balance, new_merchant, running_server

ARROWNET_COMMIT = "/api/servicegroup/commit/arrownet/"
HASHCNET_DETAILS = "/api/servicegroup/details/hashcnet-v2/"
HASHCNET_COMMIT = "/api/servicegroup/commit/hashcnet-v2/"
ARROWNET_PRICE_PAISA = 1695_00
HASHCNET_PRICE_PAISA = 999_00
SIMULTANEOUS = 20
# A race shows itself only sometimes: each rule is tried in several rounds.
ROUNDS = 5


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def paisa(rupees: float) -> int:
    return round(rupees * 100)


def arrownet_payment(token: str, reference: str) -> dict[str, Any]:
    return {
        "token": token,
        "username": "Pradhanang",
        "amount": "1695.00",
        "duration": 1,
        "reference": reference,
    }


def hashcnet_payment(token: str, reference: str, session_id: int) -> dict[str, Any]:
    # FTTH-50Mbps, 1 month, the documented payment example.
    return {
        "token": token,
        "reference": reference,
        "session_id": session_id,
        "package_code": 9,
        "duration_code": "1",
        "amount": 999.0,
    }


async def all_at_once(base_url: str, path: str, bodies: Sequence[dict[str, Any]]) -> list[Any]:
    """POST every body at the same instant, each on a connection opened beforehand."""
    count = len(bodies)
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:
        # Warm one connection per request, so that no request waits on a TCP handshake.
        warm = await asyncio.gather(*(http.get("/healthz") for _ in range(count)))
        assert all(r.status_code == 200 for r in warm)
        responses = await asyncio.gather(*(http.post(path, json=body) for body in bodies))
    return [(r.status_code, r.json()) for r in responses]


async def available_paisa(base_url: str, token: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        response = await http.get("/api/balance", headers={"Authorization": f"Token {token}"})
    assert response.status_code == 200, response.text
    return paisa(response.json()["credits_available"])


async def payment_rows(db: Database, merchant_id: int, reference: str | None = None) -> int:
    async with db.transaction() as tx:
        if reference is None:
            row = await tx.fetchrow(
                "SELECT COUNT(*) AS n FROM payments WHERE merchant_id = $1", merchant_id
            )
        else:
            row = await tx.fetchrow(
                "SELECT COUNT(*) AS n FROM payments"
                " WHERE merchant_id = $1 AND env = 'test' AND reference = $2",
                merchant_id,
                reference,
            )
    assert row is not None
    return int(row["n"])


async def isp_payments(db: Database, merchant_id: int) -> int:
    """How many payments reached the (simulated) ISP for this merchant."""
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT COUNT(*) AS n FROM sandbox_payments WHERE merchant_id = $1", merchant_id
        )
    assert row is not None
    return int(row["n"])


def split(
    answers: list[Any],
) -> tuple[list[dict[str, Any]], list[tuple[int, dict[str, Any]]]]:
    successes = [body for status, body in answers if status == 200]
    refusals = [(status, body) for status, body in answers if status != 200]
    return successes, refusals


def assert_duplicates_name_the_payment(
    refusals: list[tuple[int, dict[str, Any]]], payment_id: int
) -> None:
    for status, body in refusals:
        assert status == 400, f"{status} {body}"
        assert body["error_code"] == "1013", f"{status} {body}"
        assert body["error_data"]["id"] == payment_id, f"{status} {body}"


async def check_one_reference_executes_once(base_url: str, db: Database) -> None:
    merchant = await new_merchant(db)
    for _ in range(ROUNDS):
        reference = unique("same")
        before = await available_paisa(base_url, merchant.test_token)
        paid_before = await isp_payments(db, merchant.merchant_id)

        answers = await all_at_once(
            base_url,
            ARROWNET_COMMIT,
            [arrownet_payment(merchant.test_token, reference)] * SIMULTANEOUS,
        )

        successes, refusals = split(answers)
        assert len(successes) == 1, answers
        assert successes[0]["state"] == "Success"
        assert len(refusals) == SIMULTANEOUS - 1
        assert_duplicates_name_the_payment(refusals, successes[0]["id"])
        after = await available_paisa(base_url, merchant.test_token)
        assert before - after == ARROWNET_PRICE_PAISA
        assert await payment_rows(db, merchant.merchant_id, reference) == 1
        assert await isp_payments(db, merchant.merchant_id) == paid_before + 1
    await assert_books_balance(db)


async def check_credits_are_never_promised_twice(base_url: str, db: Database) -> None:
    merchant = await new_merchant(db, test_rupees=3 * 1695)
    bodies = [arrownet_payment(merchant.test_token, unique("cap")) for _ in range(10)]

    answers = await all_at_once(base_url, ARROWNET_COMMIT, bodies)

    successes, refusals = split(answers)
    assert len(successes) == 3, answers
    assert all(body["state"] == "Success" for body in successes)
    assert len(refusals) == 7, answers
    for status, body in refusals:
        assert status == 400, f"{status} {body}"
        assert body["error_code"] == "1016", f"{status} {body}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        balance = await http.get("/api/balance", params={"token": merchant.test_token})
    assert balance.json()["credits_available"] == 0.0
    assert balance.json()["credits_consumed"] == 3 * 1695.0
    # A refused payment leaves no row behind: only the three paid ones exist.
    assert await payment_rows(db, merchant.merchant_id) == 3
    assert await isp_payments(db, merchant.merchant_id) == 3
    await assert_books_balance(db)


async def hashcnet_session(base_url: str, token: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        response = await http.post(
            HASHCNET_DETAILS,
            json={
                "token": token,
                "reference": unique("details"),
                "username": "jeetenaug4",
                "service_slug": "vns",
            },
        )
    assert response.status_code == 200, response.text
    session_id: int = response.json()["session_id"]
    return session_id


async def test_one_arrownet_reference_executes_once_under_20_simultaneous_commits(
    server: Server, db: Database
) -> None:
    await check_one_reference_executes_once(server.base_url, db)


async def test_one_arrownet_reference_executes_once_across_two_server_processes(
    db_url: str, db: Database, tmp_path: Path
) -> None:
    with running_server(db_url, tmp_path / "two-workers.log", workers=2) as server:
        await check_one_reference_executes_once(server.base_url, db)


async def test_one_hashcnet_session_and_reference_executes_once_under_20_simultaneous_commits(
    server: Server, db: Database
) -> None:
    merchant = await new_merchant(db)
    for _ in range(ROUNDS):
        session_id = await hashcnet_session(server.base_url, merchant.test_token)
        reference = unique("same")
        before = await available_paisa(server.base_url, merchant.test_token)
        paid_before = await isp_payments(db, merchant.merchant_id)

        answers = await all_at_once(
            server.base_url,
            HASHCNET_COMMIT,
            [hashcnet_payment(merchant.test_token, reference, session_id)] * SIMULTANEOUS,
        )

        successes, refusals = split(answers)
        assert len(successes) == 1, answers
        assert successes[0]["state"] == "Success"
        assert len(refusals) == SIMULTANEOUS - 1
        assert_duplicates_name_the_payment(refusals, successes[0]["id"])
        after = await available_paisa(server.base_url, merchant.test_token)
        assert before - after == HASHCNET_PRICE_PAISA
        assert await payment_rows(db, merchant.merchant_id, reference) == 1
        assert await isp_payments(db, merchant.merchant_id) == paid_before + 1
    await assert_books_balance(db)


async def test_one_hashcnet_session_pays_once_under_20_simultaneous_references(
    server: Server, db: Database
) -> None:
    merchant = await new_merchant(db)
    session_id = await hashcnet_session(server.base_url, merchant.test_token)
    before = await available_paisa(server.base_url, merchant.test_token)

    answers = await all_at_once(
        server.base_url,
        HASHCNET_COMMIT,
        [
            hashcnet_payment(merchant.test_token, unique("ref"), session_id)
            for _ in range(SIMULTANEOUS)
        ],
    )

    successes, refusals = split(answers)
    assert len(successes) == 1, answers
    assert successes[0]["state"] == "Success"
    assert len(refusals) == SIMULTANEOUS - 1
    for status, body in refusals:
        assert status == 400, f"{status} {body}"
        assert body["error_code"] == "4000", f"{status} {body}"
        assert "used" in body["details"], f"{status} {body}"
    after = await available_paisa(server.base_url, merchant.test_token)
    assert before - after == HASHCNET_PRICE_PAISA
    assert await payment_rows(db, merchant.merchant_id) == 1
    assert await isp_payments(db, merchant.merchant_id) == 1
    await assert_books_balance(db)


async def test_credits_for_three_payments_pay_exactly_three_of_10_simultaneous(
    server: Server, db: Database
) -> None:
    await check_credits_are_never_promised_twice(server.base_url, db)


async def test_credits_for_three_payments_pay_exactly_three_across_two_server_processes(
    db_url: str, db: Database, tmp_path: Path
) -> None:
    with running_server(db_url, tmp_path / "two-workers.log", workers=2) as server:
        await check_credits_are_never_promised_twice(server.base_url, db)
