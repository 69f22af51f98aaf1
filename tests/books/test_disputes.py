"""Disputes: raised by a merchant over HTTP, resolved once by an operator's command (a
refund transfer or a rejection) in one transaction with its audit entry and the
merchant's signed `dispute.resolved` event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bhuktani.callbacks import signing
from bhuktani.domain import Env
from bhuktani.merchants import service as merchants
from bhuktani.store import Database
from tests.cli.test_commands import bhuktani, ok
from tests.receiver import Received, Receiver, receiving
from tests.support import KEY, Server, assert_books_balance, eventually, running_server

PAID = 1695.0


@dataclass
class Shop:
    """A merchant as it sees the gateway: its token, its callback secret, its receiver."""

    id: int
    token: str
    secret: str
    receiver: Receiver


@pytest.fixture
def live_server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    """`bhuktani serve`, its reconciler and deliverer polling fast."""
    with running_server(db_url, tmp_path / "server.log", BHUKTANI_CALLBACK_POLL_S="0.05") as s:
        yield s


@pytest.fixture
async def http(live_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=30) as client:
        yield client


@pytest.fixture
async def shop(db: Database) -> AsyncIterator[Shop]:
    async with receiving() as receiver:
        created = await merchants.create(
            db, "disputing shop", key=KEY, callback_url=receiver.url, test_credits_paisa=10**7
        )
        yield Shop(
            created.merchant_id,
            created.test_token,
            created.callback_secrets[Env.TEST],
            receiver,
        )


async def pay(http: httpx.AsyncClient, token: str, reference: str, user: str = "Pradhanang") -> Any:
    response = await http.post(
        "/api/servicegroup/commit/arrownet/",
        json={
            "token": token,
            "username": user,
            "amount": "1695.00",
            "duration": 1,
            "reference": reference,
        },
    )
    return response.json()


async def dispute(http: httpx.AsyncClient, token: str, **fields: Any) -> httpx.Response:
    return await http.post("/api/disputes/", json={"token": token, **fields})


async def available(http: httpx.AsyncClient, token: str) -> float:
    response = await http.get("/api/balance/", params={"token": token})
    assert response.status_code == 200, response.text
    return float(response.json()["credits_available"])


async def status(http: httpx.AsyncClient, token: str, reference: str) -> Any:
    response = await http.get(
        "/api/service/status/", params={"token": token, "reference": reference}
    )
    assert response.status_code == 200, response.text
    return response.json()


def event_of(shop: Shop, request: Received) -> Any:
    """What a merchant's receiver does: verify the signature, then read the JSON."""
    assert request.headers["content-type"] == "application/json"
    return Webhook(shop.secret).verify(request.body, request.headers)


async def received(shop: Shop, count: int) -> list[Received]:
    async def check() -> list[Received] | None:
        return shop.receiver.received if len(shop.receiver.received) >= count else None

    found: list[Received] = await eventually(check, timeout_s=20)
    return found


async def audit_entries(db: Database, action: str, merchant_id: int) -> list[Any]:
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT operator, subject, details_json FROM audit_log"
            " WHERE action = $1 AND merchant_id = $2 ORDER BY id",
            action,
            merchant_id,
        )
    )
    return [dict(r) | {"details": json.loads(str(r["details_json"]))} for r in rows]


def refused(response: httpx.Response, code: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] is False and body["state"] == "Error", body
    assert body["error_code"] == code, body
    return body


async def test_a_dispute_raised_over_http_and_refunded_by_the_operator_gives_the_money_back(
    db_url: str, db: Database, http: httpx.AsyncClient, shop: Shop
) -> None:
    paid = await pay(http, shop.token, "dsp-refund")
    assert paid["state"] == "Success", paid
    before = await available(http, shop.token)

    response = await dispute(http, shop.token, reference="dsp-refund", reason="  Not applied  ")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] is True
    raised = body["dispute"]
    assert list(raised) == [
        "id", "reference", "response_id", "amount", "reason", "status", "created_at",
        "resolved_at", "note", "refund_amount",
    ]  # fmt: skip
    assert raised["reference"] == "dsp-refund"
    assert raised["response_id"] == paid["id"]
    assert raised["amount"] == PAID and isinstance(raised["amount"], float)
    assert raised["reason"] == "Not applied"
    assert raised["status"] == "open"
    assert raised["created_at"].endswith("+05:45")
    assert raised["resolved_at"] is None and raised["note"] is None
    assert raised["refund_amount"] is None

    listed = json.loads(
        await ok(db_url, "disputes", "list", "--open", "--merchant", str(shop.id), "--json")
    )
    assert [(d["id"], d["status"], d["env"]) for d in listed] == [(raised["id"], "open", "test")]

    # Two operators at once: one resolves it, the other is refused and changes nothing.
    first, second = await asyncio.gather(
        bhuktani(db_url, "disputes", "resolve", str(raised["id"]), "--refund", "--amount", "500",
                 "--note", "ISP reversed it", "--operator", "asha"),
        bhuktani(db_url, "disputes", "resolve", str(raised["id"]), "--refund", "--amount", "500",
                 "--note", "ISP reversed it", "--operator", "bikash"),
    )  # fmt: skip
    outcomes = sorted([first.returncode, second.returncode])
    assert outcomes == [0, 1], (first, second)
    loser = second if second.returncode else first
    assert "already" in loser.stderr or "meanwhile" in loser.stderr, loser.stderr
    assert "Traceback" not in loser.stderr

    assert await available(http, shop.token) == before + 500
    looked_up = await status(http, shop.token, "dsp-refund")
    assert looked_up["state"] == "Success"
    assert looked_up["refunded"] is True and looked_up["refunded_amount"] == 500.0
    assert [r["remarks"] for r in looked_up["refunds"]] == ["ISP reversed it"]

    (request,) = await received(shop, 1)
    event = event_of(shop, request)
    assert event["type"] == "dispute.resolved"
    assert event["timestamp"].endswith("+05:45")
    resolved = event["data"]["dispute"]
    assert event["data"]["env"] == "test"
    assert resolved["id"] == raised["id"] and resolved["status"] == "refunded"
    assert resolved["refund_amount"] == 500.0 and resolved["note"] == "ISP reversed it"
    assert resolved["resolved_at"].endswith("+05:45")
    for wrong in (signing.new_secret(),):
        with pytest.raises(WebhookVerificationError):
            Webhook(wrong).verify(request.body, request.headers)

    again = await bhuktani(db_url, "disputes", "resolve", str(raised["id"]), "--reject",
                           "--note", "second thoughts")  # fmt: skip
    assert again.returncode == 1 and "refunded already" in again.stderr, again
    assert await available(http, shop.token) == before + 500
    (entry,) = await audit_entries(db, "disputes.resolve", shop.id)
    assert entry["operator"] in ("asha", "bikash")
    assert entry["details"]["refund_amount"] == 500.0
    assert entry["details"]["status"] == "refunded"
    await asyncio.sleep(0.3)
    assert len(shop.receiver.received) == 1, "one event per resolution"

    answer = await http.get("/api/disputes/", params={"token": shop.token})
    (shown,) = answer.json()["results"]
    assert shown == resolved
    await assert_books_balance(db)


async def test_a_rejection_moves_no_money_and_still_calls_the_merchant_back(
    db_url: str, db: Database, http: httpx.AsyncClient, shop: Shop
) -> None:
    await pay(http, shop.token, "dsp-reject")
    before = await available(http, shop.token)
    raised = (await dispute(http, shop.token, reference="dsp-reject", reason="wrong plan")).json()
    dispute_id = str(raised["dispute"]["id"])

    amount_with_reject = await bhuktani(
        db_url, "disputes", "resolve", dispute_id, "--reject", "--amount", "5", "--note", "x"
    )
    assert amount_with_reject.returncode == 2, amount_with_reject
    out = await ok(
        db_url, "disputes", "resolve", dispute_id, "--reject", "--note", "It was applied"
    )
    assert "rejected" in out

    assert await available(http, shop.token) == before
    assert (await status(http, shop.token, "dsp-reject"))["refunded"] is False
    (request,) = await received(shop, 1)
    event = event_of(shop, request)
    assert event["type"] == "dispute.resolved"
    assert event["data"]["dispute"]["status"] == "rejected"
    assert event["data"]["dispute"]["refund_amount"] is None
    assert event["data"]["dispute"]["note"] == "It was applied"
    (entry,) = await audit_entries(db, "disputes.resolve", shop.id)
    assert entry["details"]["status"] == "rejected" and entry["details"]["refund_amount"] is None

    # Rejected, it is no longer open: the merchant may dispute the payment again.
    second = await dispute(http, shop.token, reference="dsp-reject", reason="still wrong")
    assert second.status_code == 200 and second.json()["dispute"]["id"] != raised["dispute"]["id"]
    await assert_books_balance(db)


async def test_a_refund_without_amount_gives_back_all_that_is_left(
    db_url: str, http: httpx.AsyncClient, shop: Shop
) -> None:
    await pay(http, shop.token, "dsp-all")
    before = await available(http, shop.token)
    raised = (await dispute(http, shop.token, reference="dsp-all", reason="never applied")).json()
    await ok(
        db_url, "disputes", "resolve", str(raised["dispute"]["id"]), "--refund", "--note", "all"
    )
    assert await available(http, shop.token) == before + PAID
    assert (await status(http, shop.token, "dsp-all"))["refunded_amount"] == PAID
    event = event_of(shop, (await received(shop, 1))[0])
    assert event["data"]["dispute"]["refund_amount"] == PAID


async def test_a_failed_payments_dispute_has_nothing_to_refund_and_is_rejected(
    db_url: str, db: Database, http: httpx.AsyncClient, shop: Shop
) -> None:
    answer = await pay(http, shop.token, "dsp-failed", user="lost-user")
    assert answer["state"] == "Processing", answer

    async def failed() -> bool:
        return bool((await status(http, shop.token, "dsp-failed"))["state"] == "Failed")

    await eventually(failed, timeout_s=20)
    before = await available(http, shop.token)
    raised = (await dispute(http, shop.token, reference="dsp-failed", reason="charged?")).json()
    dispute_id = str(raised["dispute"]["id"])
    assert raised["dispute"]["status"] == "open"

    refund = await bhuktani(db_url, "disputes", "resolve", dispute_id, "--refund", "--note", "x")
    assert refund.returncode == 1 and "nothing to refund" in refund.stderr, refund
    assert await audit_entries(db, "disputes.resolve", shop.id) == []
    await ok(db_url, "disputes", "resolve", dispute_id, "--reject", "--note", "It failed")
    assert await available(http, shop.token) == before
    # The DLR of the failure (a form), and the event (JSON).
    requests = await received(shop, 2)
    kinds = sorted(r.headers["content-type"].split(";")[0] for r in requests)
    assert kinds == ["application/json", "multipart/form-data"]
    (request,) = [r for r in requests if r.headers["content-type"] == "application/json"]
    event = event_of(shop, request)
    assert event["data"]["dispute"]["status"] == "rejected"
    assert event["data"]["dispute"]["amount"] == PAID


async def test_every_refusal_of_a_dispute(db_url: str, db: Database, tmp_path: Path) -> None:
    async with receiving() as receiver:
        created = await merchants.create(
            db, "refused shop", key=KEY, callback_url=receiver.url, test_credits_paisa=10**7
        )
        other = await merchants.create(db, "other shop", key=KEY, test_credits_paisa=10**7)
        token = created.test_token
        # No reconciler: a payment the ISP has not answered stays Processing.
        with running_server(db_url, tmp_path / "server.log", reconciler=False) as server:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
                assert (await pay(http, token, "dsp-ok"))["state"] == "Success"
                assert (await pay(http, other.test_token, "dsp-theirs"))["state"] == "Success"
                pending = await pay(http, token, "dsp-pending", user="flaky-user")
                assert pending["state"] == "Processing", pending

                for fields in ({"reason": "x"}, {"reference": "", "reason": "x"}):
                    refused(await dispute(http, token, **fields), "1012")
                for reference in ("dsp-nothing", "dsp-theirs", "r" * 51):
                    refused(await dispute(http, token, reference=reference, reason="x"), "002")
                for reason in (None, "", "   ", "x" * 501, 5):
                    fields = {"reference": "dsp-ok"} | (
                        {} if reason is None else {"reason": reason}
                    )
                    body = refused(await dispute(http, token, **fields), "1010")
                    assert list(body["error_data"]) == ["reason"], body
                body = refused(
                    await dispute(http, token, reference="dsp-pending", reason="x"), "4000"
                )
                assert "Processing" in body["details"] and "final" in body["details"], body

                at_limit = await dispute(http, token, reference="dsp-ok", reason="y" * 500)
                assert at_limit.status_code == 200, at_limit.text
                first_id = at_limit.json()["dispute"]["id"]
                body = refused(await dispute(http, token, reference="dsp-ok", reason="z"), "4000")
                assert body["error_data"] == {"dispute_id": first_id}, body
                refused(await dispute(http, "", reference="dsp-ok", reason="z"), "1001")

                listed = (await http.get("/api/disputes/", params={"token": token})).json()
                assert [d["id"] for d in listed["results"]] == [first_id]

    missing = await bhuktani(db_url, "disputes", "resolve", "987654321", "--reject", "--note", "x")
    assert missing.returncode == 1 and "no dispute" in missing.stderr, missing
    neither = await bhuktani(db_url, "disputes", "resolve", str(first_id), "--note", "x")
    assert neither.returncode == 2, neither
    blank = await bhuktani(db_url, "disputes", "resolve", str(first_id), "--reject", "--note", " ")
    assert blank.returncode == 1 and "note" in blank.stderr, blank
    assert await audit_entries(db, "disputes.resolve", created.merchant_id) == []
    assert receiver.received == []


async def test_the_merchants_listing_pages_newest_first_and_filters_by_status(
    db: Database, http: httpx.AsyncClient, shop: Shop
) -> None:
    ids = []
    for n in range(7):
        await pay(http, shop.token, f"dsp-page-{n}")
        raised = await dispute(http, shop.token, reference=f"dsp-page-{n}", reason=f"r{n}")
        ids.append(raised.json()["dispute"]["id"])
    other = await merchants.create(db, "quiet shop", key=KEY, test_credits_paisa=10**6)
    assert (await http.get("/api/disputes/", params={"token": other.test_token})).json() == {
        "status": True,
        "results": [],
        "next_cursor": None,
    }

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"token": shop.token, "limit": "3"} | ({"cursor": cursor} if cursor else {})
        page = (await http.get("/api/disputes/", params=params)).json()
        assert page["status"] is True and len(page["results"]) <= 3
        seen += [d["id"] for d in page["results"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 5
    assert seen == list(reversed(ids)) and pages == 3

    # The body works as the query string does (as the look-ups).
    by_body = await http.request("GET", "/api/disputes/", json={"token": shop.token, "limit": 2})
    assert [d["id"] for d in by_body.json()["results"]] == list(reversed(ids))[:2]

    from bhuktani.books import disputes

    for dispute_id in ids[:2]:
        await disputes.resolve(db, dispute_id, refund=False, note="no", operator_name="ops")
    rejected = await http.get("/api/disputes/", params={"token": shop.token, "status": "rejected"})
    assert [d["id"] for d in rejected.json()["results"]] == list(reversed(ids[:2]))
    still_open = await http.get("/api/disputes/", params={"token": shop.token, "status": "open"})
    assert [d["id"] for d in still_open.json()["results"]] == list(reversed(ids[2:]))

    for field, value in (
        ("limit", "0"), ("limit", "101"), ("limit", "ten"), ("status", "closed"),
        ("cursor", "garbage"),
    ):  # fmt: skip
        answer = await http.get("/api/disputes/", params={"token": shop.token, field: value})
        assert refused(answer, "1010")["error_data"] == {field: answer.json()["error_data"][field]}
    full = await http.get("/api/disputes/", params={"token": shop.token, "limit": "100"})
    assert len(full.json()["results"]) == 7 and full.json()["next_cursor"] is None
