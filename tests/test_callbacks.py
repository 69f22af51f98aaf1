"""Delivery callbacks (DLR): queued with the final state, signed, delivered at least once,
every attempt recorded, retried on a bounded schedule; LIVE ones only to public hosts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bhuktani.api.app import create_app
from bhuktani.callbacks import outbox, signing, urls
from bhuktani.merchants import service as merchants
from bhuktani.store import Database, connect
from bhuktani.store.migrate import upgrade
from tests.receiver import receiving
from tests.support import (
    KEY,
    assert_books_balance,
    eventually,
    fast_settings,
    holding_writer_lock,
)


class Gateway:
    def __init__(self, http: httpx.AsyncClient, db: Database) -> None:
        self.http = http
        self.db = db

    async def merchant(self, callback_url: str | None, **kw: Any) -> merchants.NewMerchant:
        return await merchants.create(
            self.db,
            "dlr merchant",
            key=KEY,
            callback_url=callback_url,
            test_credits_paisa=1_000_000,
            live_credits_paisa=1_000_000,
            **kw,
        )

    async def pay(self, token: str, username: str, reference: str) -> dict[str, Any]:
        response = await self.http.post(
            "/api/servicegroup/commit/arrownet/",
            json={
                "token": token,
                "username": username,
                "amount": "1695.00",
                "duration": 1,
                "reference": reference,
            },
        )
        body: dict[str, Any] = response.json()
        return body

    async def callbacks(self, payment_id: int) -> list[dict[str, Any]]:
        async with self.db.transaction() as tx:
            rows = await tx.fetch(
                "SELECT id, status, attempts FROM callbacks WHERE payment_id = $1", payment_id
            )
        return [dict(r) for r in rows]

    async def attempts(self, callback_id: int) -> list[dict[str, Any]]:
        async with self.db.transaction() as tx:
            rows = await tx.fetch(
                "SELECT http_status, latency_ms, error, attempted_ms FROM callback_attempts"
                " WHERE callback_id = $1 ORDER BY id",
                callback_id,
            )
        return [dict(r) for r in rows]


SCHEDULE = [0.05, 0.05, 0.05, 0.05]


@pytest.fixture
async def gateway(db_url: str) -> AsyncIterator[Gateway]:
    settings = fast_settings(db_url, callback_backoff_s=SCHEDULE, callback_poll_s=0.02)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield Gateway(http, app.state.gateway.db)
        await assert_books_balance(app.state.gateway.db)


async def delivered(gateway: Gateway, payment_id: int) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = await gateway.callbacks(payment_id)
        return found[0] if found and found[0]["status"] != "pending" else None

    result: dict[str, Any] = await eventually(check, timeout_s=15)
    return result


async def test_processing_payment_reaching_success_is_called_back_signed(
    gateway: Gateway,
) -> None:
    async with receiving() as receiver:
        merchant = await gateway.merchant(receiver.url)
        answer = await gateway.pay(merchant.test_token, "flaky-user", "dlr-1")
        assert answer["state"] == "Processing"
        callback = await delivered(gateway, answer["id"])
        assert callback["status"] == "delivered"
        assert len(receiver.received) == 1
        request = receiver.received[0]
        assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert request.fields() == {
            "reference": "dlr-1",
            "amount": "1695.00",
            "status": "Success",
            "detail": request.fields()["detail"],
            "response_id": str(answer["id"]),
        }
        assert request.fields()["detail"].startswith("Transaction successful")
        signature = request.headers[signing.SIGNATURE_HEADER.lower()]
        assert signing.verify(merchant.callback_secret, signature, request.body, int(time.time()))
        assert not signing.verify("whsec_other", signature, request.body, int(time.time()))
        assert not signing.verify(
            merchant.callback_secret, signature, request.body + b"x", int(time.time())
        )
        assert request.headers[signing.EVENT_HEADER.lower()]


async def test_lost_payment_reaching_failed_is_called_back(gateway: Gateway) -> None:
    async with receiving() as receiver:
        merchant = await gateway.merchant(receiver.url)
        answer = await gateway.pay(merchant.test_token, "lost-user", "dlr-lost")
        await delivered(gateway, answer["id"])
        assert receiver.received[0].fields()["status"] == "Failed"


async def test_a_final_answer_given_at_once_sends_no_callback(gateway: Gateway) -> None:
    async with receiving() as receiver:
        merchant = await gateway.merchant(receiver.url)
        answer = await gateway.pay(merchant.test_token, "Pradhanang", "dlr-sync")
        assert answer["state"] == "Success"
        await asyncio.sleep(0.3)
        assert await gateway.callbacks(answer["id"]) == []
        assert receiver.received == []


async def test_receiver_down_then_up_is_delivered_once_acknowledged(gateway: Gateway) -> None:
    async with receiving() as receiver:
        receiver.fail_first = 3
        merchant = await gateway.merchant(receiver.url)
        answer = await gateway.pay(merchant.test_token, "flaky-user", "dlr-retry")
        callback = await delivered(gateway, answer["id"])
        assert callback["status"] == "delivered"
        assert callback["attempts"] == 4
        attempts = await gateway.attempts(callback["id"])
        assert [a["http_status"] for a in attempts] == [503, 503, 503, 200]
        assert all(a["latency_ms"] >= 0 and a["attempted_ms"] > 0 for a in attempts)
        events = {r.headers[signing.EVENT_HEADER.lower()] for r in receiver.received}
        assert len(events) == 1, "every attempt carries the same event id, for de-duplication"
        await asyncio.sleep(0.3)
        assert len(receiver.received) == 4, "nothing is sent after the acknowledgement"


async def test_the_schedule_is_bounded_and_then_the_callback_expires(gateway: Gateway) -> None:
    async with receiving() as receiver:
        receiver.fail_first = 1000
        merchant = await gateway.merchant(receiver.url)
        answer = await gateway.pay(merchant.test_token, "flaky-user", "dlr-expire")
        callback = await delivered(gateway, answer["id"])
        assert callback["status"] == "expired"
        assert callback["attempts"] == len(SCHEDULE) + 1
        await asyncio.sleep(0.3)
        assert len(receiver.received) == len(SCHEDULE) + 1


async def test_an_operator_lists_a_callback_with_its_attempts_and_sends_it_again(
    gateway: Gateway,
) -> None:
    async with receiving() as receiver:
        receiver.fail_first = 1000
        merchant = await gateway.merchant(receiver.url)
        answer = await gateway.pay(merchant.test_token, "flaky-user", "dlr-operator")
        other = await gateway.pay(merchant.test_token, "flaky-user", "dlr-other")
        expired = await delivered(gateway, answer["id"])
        assert expired["status"] == "expired"
        await delivered(gateway, other["id"])

        (listed,) = await outbox.listing(gateway.db, "dlr-operator")
        assert listed["id"] == expired["id"]
        assert listed["reference"] == "dlr-operator"
        assert listed["status"] == "expired"
        log = listed["attempt_log"]
        assert isinstance(log, list)
        assert [a["http_status"] for a in log] == [503] * (len(SCHEDULE) + 1)
        assert {row["reference"] for row in await outbox.listing(gateway.db, None)} >= {
            "dlr-operator",
            "dlr-other",
        }

        receiver.fail_first = 0
        assert await outbox.retry_now(gateway.db, int(expired["id"])) is True
        again = await delivered(gateway, answer["id"])
        assert again["status"] == "delivered"
        assert again["attempts"] == len(SCHEDULE) + 2
        assert await outbox.retry_now(gateway.db, 10**12) is False


async def test_redirects_are_not_followed(gateway: Gateway) -> None:
    async with receiving() as receiver, receiving("/elsewhere") as elsewhere:
        receiver.fail_first = 1000
        receiver.status_when_failing = 302
        receiver.headers_when_failing = {"location": elsewhere.url}
        merchant = await gateway.merchant(receiver.url)
        answer = await gateway.pay(merchant.test_token, "flaky-user", "dlr-302")
        callback = await delivered(gateway, answer["id"])
        assert callback["status"] == "expired"
        assert elsewhere.received == []
        assert {a["http_status"] for a in await gateway.attempts(callback["id"])} == {302}


async def test_live_callbacks_to_private_addresses_are_never_sent(db_url: str) -> None:
    """A LIVE merchant's callback URL on loopback: refused at every attempt, recorded."""
    settings = fast_settings(db_url, callback_backoff_s=[0.05], callback_poll_s=0.02)
    app = create_app(settings)
    async with app.router.lifespan_context(app), receiving() as receiver:
        db = app.state.gateway.db
        merchant = await merchants.create(
            db, "live dlr", key=KEY, callback_url=receiver.url, live_credits_paisa=10_000_000
        )
        # A LIVE payment made final by the reconciler, queued as any other.
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO callbacks (event_id, merchant_id, env, payment_id, url,"
                " payload_json, next_attempt_ms, created_ms) VALUES ($1, $2, 'live', 1, $3,"
                " '{}', 0, 0)",
                "00000000-0000-0000-0000-00000000live",
                merchant.merchant_id,
                receiver.url,
            )

        async def expired() -> bool:
            async with db.transaction() as tx:
                row = await tx.fetchrow(
                    "SELECT status FROM callbacks WHERE event_id = $1",
                    "00000000-0000-0000-0000-00000000live",
                )
            return row is not None and row["status"] == "expired"

        await eventually(expired, timeout_s=10)
        assert receiver.received == [], "nothing reached the private address"
        async with db.transaction() as tx:
            errors = await tx.fetch(
                "SELECT a.error FROM callback_attempts a JOIN callbacks c ON c.id = a.callback_id"
                " WHERE c.event_id = $1",
                "00000000-0000-0000-0000-00000000live",
            )
        assert errors and all("non-public" in str(e["error"]) for e in errors)


async def test_on_sqlite_the_outbox_queues_for_the_write_lock_with_the_payments(
    tmp_path: Path,
) -> None:
    """The callback worker claims every second. Its writes wait in the kernel's queue for
    the writer lock, in turn with every payment's transaction (here this test holds that
    lock, as another process would), and so never sit in SQLite's busy wait, where a
    claim could starve under load and, once it won, hold a group of payments back."""
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    upgrade(url)
    db = await connect(url)
    try:
        merchant = await merchants.create(
            db, "dlr", key=KEY, callback_url="https://merchant.example/dlr"
        )
        await db.run(
            lambda tx: tx.execute(
                "INSERT INTO callbacks (event_id, merchant_id, env, payment_id, url,"
                " payload_json, next_attempt_ms, created_ms) VALUES ('e-1', $1, 'test', 1,"
                " 'https://merchant.example/dlr', '{}', 0, 0)",
                merchant.merchant_id,
            )
        )
        with holding_writer_lock(tmp_path / "outbox.db"):
            claim = asyncio.create_task(outbox.claim_due(db, limit=10, lease_ms=60_000))
            retry = asyncio.create_task(outbox.retry_now(db, 999))
            await asyncio.sleep(0.3)
            assert not claim.done(), "the claim went ahead of the writer lock's holder"
            assert not retry.done(), "the retry went ahead of the writer lock's holder"
        (due,) = await asyncio.wait_for(claim, 5)
        assert due.event_id == "e-1"
        assert await asyncio.wait_for(retry, 5) is False

        with holding_writer_lock(tmp_path / "outbox.db"):
            record = asyncio.create_task(
                outbox.record_attempt(
                    db, due.id, http_status=200, latency_ms=3, error=None, next_attempt_ms=None
                )
            )
            await asyncio.sleep(0.3)
            assert not record.done(), "the attempt's record went ahead of the lock's holder"
        assert await asyncio.wait_for(record, 5) == "delivered"
    finally:
        await db.close()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fc00::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        # IPv6 forms carrying an IPv4 address are judged by that address.
        ("::127.0.0.1", False),  # IPv4-compatible
        ("::10.0.0.1", False),
        ("::8.8.8.8", True),
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", False),  # 6to4 of the metadata address
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("64:ff9b:1::808:808", False),  # local-use NAT64: the IPv4 part cannot be told
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo, client 192.0.2.45
        ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", True),  # Teredo, client 8.8.8.8
        ("2001:0:7f00:1:8000:63bf:f7f7:f7f7", False),  # Teredo, server 127.0.0.1
        ("::ffff:8.8.8.8", True),
        ("ff0e::1", False),
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
        ("2001:4860:4860::8888", True),
    ],
)
def test_only_public_addresses_are_allowed_for_live(address: str, public: bool) -> None:
    assert urls.is_public(address) is public


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "http:///nohost", "https://user:pw@example.com/", "x" * 3000],
)
def test_malformed_callback_urls_are_refused(url: str) -> None:
    with pytest.raises(urls.UnsafeUrl):
        urls.check_syntax(url)


async def test_a_live_host_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(urls.UnsafeUrl, match="non-public"):
        await urls.public_address("http://localhost:8080/dlr")
