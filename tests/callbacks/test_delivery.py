"""Delivery callbacks (DLR): queued with the final state, signed, delivered at least once,
every attempt recorded, retried on a bounded schedule; LIVE ones only to public hosts."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bhuktani.api.app import create_app
from bhuktani.callbacks import delivery as callback_worker
from bhuktani.callbacks import outbox, signing, urls
from bhuktani.domain import Env
from bhuktani.merchants import service as merchants
from bhuktani.store import Database, connect
from bhuktani.store.migrate import upgrade
from tests.receiver import Received, Receiver, dripping, flooding, receiving
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


def verify(secret: str, request: Received) -> None:
    """What a merchant's receiver does (README): raises WebhookVerificationError."""
    Webhook(secret).verify(request.body, request.headers, json_parse=False)


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
            "env": "test",
        }
        assert request.fields()["detail"].startswith("Transaction successful")
        assert request.fields()["env"] == "test"
        verify(merchant.callback_secrets[Env.TEST], request)
        for wrong in (merchant.callback_secrets[Env.LIVE], signing.new_secret()):
            with pytest.raises(WebhookVerificationError):
                verify(wrong, request)
        with pytest.raises(WebhookVerificationError):
            Webhook(merchant.callback_secrets[Env.TEST]).verify(
                request.body + b"x", request.headers, json_parse=False
            )
        assert request.headers["webhook-id"] == str(uuid.UUID(request.headers["webhook-id"]))
        assert request.headers["webhook-signature"].startswith("v1,")
        assert not any(name.startswith("x-bhuktani") for name in request.headers)


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
        events = {r.headers["webhook-id"] for r in receiver.received}
        assert len(events) == 1, "every attempt carries the same webhook-id, for de-duplication"
        (event_id,) = events
        async with gateway.db.transaction() as tx:
            row = await tx.fetchrow("SELECT event_id FROM callbacks WHERE id = $1", callback["id"])
        assert row is not None and row["event_id"] == event_id
        timestamps = [r.headers["webhook-timestamp"] for r in receiver.received]
        assert all(t.isdigit() for t in timestamps)
        for request in receiver.received:
            verify(merchant.callback_secrets[Env.TEST], request)
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
        assert await outbox.retry_now(gateway.db, int(expired["id"]), operator="ops") is True
        again = await delivered(gateway, answer["id"])
        assert again["status"] == "delivered"
        assert again["attempts"] == len(SCHEDULE) + 2
        assert await outbox.retry_now(gateway.db, 10**12, operator="ops") is False


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
            retry = asyncio.create_task(outbox.retry_now(db, 999, operator="ops"))
            await asyncio.sleep(0.3)
            assert not claim.done(), "the claim went ahead of the writer lock's holder"
            assert not retry.done(), "the retry went ahead of the writer lock's holder"
        (due,) = await asyncio.wait_for(claim, 5)
        assert due.event_id == "e-1"
        assert await asyncio.wait_for(retry, 5) is False

        with holding_writer_lock(tmp_path / "outbox.db"):
            record = asyncio.create_task(
                outbox.record_attempt(
                    db, due, http_status=200, latency_ms=3, error=None, next_attempt_ms=None
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


async def queue_callback(db: Database, merchant_id: int, env: str, url: str) -> str:
    """A callback due now, as the payment flows queue one; its event id."""
    event_id = str(uuid.uuid4())
    await db.run(
        lambda tx: tx.execute(
            "INSERT INTO callbacks (event_id, merchant_id, env, payment_id, url, payload_json,"
            " next_attempt_ms, created_ms) VALUES ($1, $2, $3, 1, $4, $5, 0, 0)",
            event_id,
            merchant_id,
            env,
            url,
            '{"reference":"r-1","amount":"1.00","status":"Success","detail":"d","response_id":"1"}',
        )
    )
    return event_id


async def callback_row(db: Database, event_id: str) -> dict[str, Any]:
    row = await db.read(
        lambda tx: tx.fetchrow(
            "SELECT id, status, attempts FROM callbacks WHERE event_id = $1", event_id
        )
    )
    assert row is not None
    return dict(row)


async def attempt_log(db: Database, event_id: str) -> list[dict[str, Any]]:
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT a.http_status, a.latency_ms, a.error FROM callback_attempts a"
            " JOIN callbacks c ON c.id = a.callback_id WHERE c.event_id = $1 ORDER BY a.id",
            event_id,
        )
    )
    return [dict(r) for r in rows]


async def delivered_within(db: Database, event_id: str, timeout_s: float) -> float:
    """Seconds until the callback is delivered; fails past timeout_s."""
    started = time.monotonic()

    async def check() -> bool:
        return (await callback_row(db, event_id))["status"] == "delivered"

    await eventually(check, timeout_s=timeout_s, every_s=0.02)
    return time.monotonic() - started


ISOLATION = {
    "callback_timeout_s": 1.0,
    "callback_poll_s": 0.02,
    "callback_backoff_s": [60.0],
    "callback_allow_private": True,
    "reconciler_enabled": False,
}


async def test_a_dripping_receiver_costs_one_timeout_and_delays_no_other_callback(
    db_url: str,
) -> None:
    """The receiver answers `200 OK`, `Content-Length: 1000`, then a byte every half second
    (httpx's timeout is per read, so without one deadline an attempt lasts ~500 s). The
    attempt ends at the callback timeout (1 s here), recorded as failed; meanwhile another
    merchant's callback and the same merchant's in the other environment are delivered at
    once."""
    app = create_app(fast_settings(db_url, **ISOLATION))
    async with app.router.lifespan_context(app), dripping() as slow, receiving() as fast:
        db = app.state.gateway.db
        stuck = await merchants.create(db, "dripping", key=KEY, callback_url=slow.url)
        other = await merchants.create(db, "other", key=KEY, callback_url=fast.url)
        assert await merchants.set_callback_url(db, stuck.merchant_id, Env.LIVE, fast.url)
        slow_event = await queue_callback(db, stuck.merchant_id, "test", slow.url)
        await asyncio.wait_for(slow.answering.wait(), timeout=5)

        other_event = await queue_callback(db, other.merchant_id, "test", fast.url)
        live_event = await queue_callback(db, stuck.merchant_id, "live", fast.url)
        assert await delivered_within(db, other_event, timeout_s=2) < 2
        assert await delivered_within(db, live_event, timeout_s=2) < 2

        async def failed_attempt() -> list[dict[str, Any]]:
            return await attempt_log(db, slow_event)

        (attempt,) = await eventually(failed_attempt, timeout_s=3, every_s=0.02)
        assert attempt["http_status"] is None
        assert attempt["error"] == "TimeoutError"
        assert 900 <= attempt["latency_ms"] < 1500, attempt
        assert (await callback_row(db, slow_event))["status"] == "pending"
        assert slow.body_bytes_sent <= 3


async def test_a_huge_answer_is_read_no_further_than_64_kib(db_url: str) -> None:
    """The receiver answers 200 with a 50 MB body as fast as it is taken: the deliverer
    reads at most 64 KiB of it, then closes the connection."""
    app = create_app(fast_settings(db_url, **ISOLATION))
    async with app.router.lifespan_context(app), flooding() as flood:
        db = app.state.gateway.db
        merchant = await merchants.create(db, "flooding", key=KEY, callback_url=flood.url)
        event = await queue_callback(db, merchant.merchant_id, "test", flood.url)
        assert await delivered_within(db, event, timeout_s=3) < 3
        (attempt,) = await attempt_log(db, event)
        assert attempt["http_status"] == 200

        async def cut_off() -> bool:
            return flood.closed_by_client == 1

        await eventually(cut_off, timeout_s=3)
        # What the kernel's buffers took beyond what was read is a few hundred KiB at most.
        assert flood.body_bytes_sent < 4 * 1024 * 1024, flood.body_bytes_sent


async def test_a_claim_takes_every_endpoints_first_before_any_endpoints_second(
    db: Database,
) -> None:
    """One endpoint's backlog (merchant A's TEST callbacks, all due earlier) does not fill
    a claim: B's callback and A's LIVE one are taken in the first turn, and an endpoint
    with sends in flight gets only what its bound leaves."""
    backlog = await merchants.create(db, "backlog", key=KEY, callback_url="https://a.example/")
    other = await merchants.create(db, "other", key=KEY, callback_url="https://b.example/")
    a_test = [await queue_callback(db, backlog.merchant_id, "test", "x") for _ in range(20)]
    a_live = await queue_callback(db, backlog.merchant_id, "live", "x")
    b_test = await queue_callback(db, other.merchant_id, "test", "x")
    try:
        claimed = await outbox.claim_due(db, limit=5, lease_ms=60_000, per_endpoint=3)
        events = {due.event_id for due in claimed}
        assert len(claimed) == 5
        assert {a_live, b_test} <= events
        assert len(events & set(a_test)) == 3
        assert all(due.url is not None and due.signing_secrets for due in claimed)

        busy = {(backlog.merchant_id, "test"): 3}
        more = await outbox.claim_due(db, limit=50, lease_ms=60_000, per_endpoint=3, busy=busy)
        assert more == [], "A's TEST endpoint is at its bound; the rest is leased"
        busy = {(backlog.merchant_id, "test"): 1}
        more = await outbox.claim_due(db, limit=50, lease_ms=60_000, per_endpoint=3, busy=busy)
        assert len(more) == 2 and {d.event_id for d in more} <= set(a_test) - events
    finally:
        await db.run(
            lambda tx: tx.execute(
                "DELETE FROM callbacks WHERE merchant_id IN ($1, $2)",
                backlog.merchant_id,
                other.merchant_id,
            )
        )


async def test_a_leased_callback_is_not_claimed_again_and_a_lost_lease_records_nothing(
    db: Database,
) -> None:
    merchant = await merchants.create(db, "leases", key=KEY, callback_url="https://a.example/")
    event = await queue_callback(db, merchant.merchant_id, "test", "x")
    try:
        claims = await asyncio.gather(
            *(outbox.claim_due(db, limit=10, lease_ms=60_000) for _ in range(4))
        )
        mine = [due for claim in claims for due in claim if due.event_id == event]
        assert len(mine) == 1, "claimed once, however many deliverers ask"
        # Its lease runs out (a stalled process) and another claim takes the callback.
        await db.run(
            lambda tx: tx.execute(
                "UPDATE callbacks SET lease_until_ms = 0 WHERE event_id = $1", event
            )
        )
        (due,) = [
            d for d in await outbox.claim_due(db, limit=10, lease_ms=5) if d.event_id == event
        ]
        await asyncio.sleep(0.05)
        (again,) = [
            d for d in await outbox.claim_due(db, limit=10, lease_ms=60_000) if d.event_id == event
        ]
        assert again.lease_until_ms != due.lease_until_ms
        stale = await outbox.record_attempt(
            db, due, http_status=200, latency_ms=1, error=None, next_attempt_ms=None
        )
        assert stale == "lost"
        assert (await callback_row(db, event))["status"] == "pending"
        fresh = await outbox.record_attempt(
            db, again, http_status=200, latency_ms=1, error=None, next_attempt_ms=None
        )
        assert fresh == "delivered"
        assert len(await attempt_log(db, event)) == 2, "both attempts are on record"
    finally:
        await db.run(lambda tx: tx.execute("DELETE FROM callbacks WHERE event_id = $1", event))


def test_a_lease_outlasts_the_attempts_deadline() -> None:
    assert callback_worker.lease_ms(60, 10) == 60_000
    assert callback_worker.lease_ms(5, 10) == 40_000
    assert callback_worker.lease_ms(60, 45) == 75_000


def test_test_and_live_callbacks_follow_one_backoff_schedule() -> None:
    """BHUKTANI_CALLBACK_BACKOFF_S is the only schedule: it takes no environment (the
    TEST payments of this file's gateway fixture expire after len(SCHEDULE) retries)."""
    before = time.time() * 1000
    first = callback_worker.next_attempt_ms([1.5, 60.0], 0)
    assert first is not None and abs(first - (before + 1500)) < 1000
    assert callback_worker.next_attempt_ms([1.5, 60.0], 2) is None
    assert list(inspect.signature(callback_worker.next_attempt_ms).parameters) == [
        "schedule_s",
        "attempts_before",
    ]


async def test_sends_to_one_endpoint_stay_within_its_bound_and_a_freed_slot_is_used_at_once(
    db_url: str,
) -> None:
    """20 callbacks due for one endpoint when the deliverer starts, 2 at a time, each
    answered in 0.1 s: all are delivered in about a second, though the deliverer polls
    only every 30 s (a send's end claims the next), and never more than 2 reach the
    receiver at once."""
    settings = fast_settings(
        db_url,
        **{**ISOLATION, "callback_poll_s": 30.0, "callback_endpoint_concurrency": 2},
    )
    async with receiving() as receiver:
        receiver.delay_s = 0.1
        db = await connect(db_url)
        try:
            merchant = await merchants.create(db, "bounded", key=KEY, callback_url=receiver.url)
            events = [
                await queue_callback(db, merchant.merchant_id, "test", "x") for _ in range(20)
            ]
        finally:
            await db.close()
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            db = app.state.gateway.db
            await check_bounded_delivery(db, receiver, events)


async def check_bounded_delivery(db: Database, receiver: Receiver, events: list[str]) -> None:
    started = time.monotonic()

    async def all_delivered() -> bool:
        rows = [await callback_row(db, e) for e in events]
        return all(r["status"] == "delivered" for r in rows)

    await eventually(all_delivered, timeout_s=5, every_s=0.05)
    assert time.monotonic() - started < 5
    assert receiver.most_in_flight == 2
    assert len(receiver.received) == 20


async def test_a_live_callback_is_pinned_to_its_checked_address_and_never_pooled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def checked(url: str) -> str:
        assert url == "https://merchant.example:8443/dlr?x=1"
        return "2606:4700::6810:84e5"

    monkeypatch.setattr(urls, "public_address", checked)
    target, headers, extensions = await callback_worker._target(
        "https://merchant.example:8443/dlr?x=1", "live", allow_private=False
    )
    assert target == "https://[2606:4700::6810:84e5]:8443/dlr?x=1"
    assert headers == {"Host": "merchant.example:8443", "Connection": "close"}
    assert extensions == {"sni_hostname": "merchant.example"}
    same = await callback_worker._target("http://127.0.0.1:9/dlr", "test", allow_private=False)
    assert same == ("http://127.0.0.1:9/dlr", {}, {})


async def test_concurrent_claims_never_lease_one_callback_twice(db_url: str) -> None:
    """Deliverers in several processes, as connections of their own: 40 due callbacks,
    rounds of 8 claims at once, each callback leased by exactly one of them."""
    dbs = [await connect(db_url) for _ in range(4)]
    merchant = await merchants.create(dbs[0], "racing", key=KEY, callback_url="https://a.example/")
    events = {await queue_callback(dbs[0], merchant.merchant_id, "test", "x") for _ in range(40)}
    try:
        leased: list[str] = []
        for _ in range(10):  # a claim skips what another is leasing: the next one takes it
            claims = await asyncio.gather(
                *(
                    outbox.claim_due(dbs[n % 4], limit=10, lease_ms=60_000, per_endpoint=40)
                    for n in range(8)
                )
            )
            leased += [due.event_id for claim in claims for due in claim if due.event_id in events]
            if set(leased) == events:
                break
        assert len(leased) == len(set(leased)), "a callback was leased twice"
        assert set(leased) == events
    finally:
        await dbs[0].run(
            lambda tx: tx.execute(
                "DELETE FROM callbacks WHERE merchant_id = $1", merchant.merchant_id
            )
        )
        for db in dbs:
            await db.close()
