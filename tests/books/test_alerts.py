"""Low-balance alerts: a merchant whose available credits drop below its threshold hears
one signed `balance.low` event per dip, however many polls and loops see it; the operator
sets the threshold (audited); events are listed and retried as DLRs are."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from bhuktani.books import alerts
from bhuktani.callbacks import outbox
from bhuktani.domain import Env
from bhuktani.merchants import service as merchants
from bhuktani.settings import Settings
from bhuktani.store import Database, connect
from tests.cli.test_commands import bhuktani, ok
from tests.conftest import AppClient
from tests.receiver import Received, receiving
from tests.support import KEY, assert_books_balance, eventually, fast_settings, running_server

PRICE_PAISA = 1695_00


async def pay(http: httpx.AsyncClient, token: str, reference: str) -> None:
    response = await http.post(
        "/api/servicegroup/commit/arrownet/",
        json={
            "token": token,
            "username": "Pradhanang",
            "amount": "1695.00",
            "duration": 1,
            "reference": reference,
        },
    )
    assert response.json()["state"] == "Success", response.text


async def low_events(db: Database, merchant_id: int) -> list[dict[str, Any]]:
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT id, event_id, payment_id, payload_json FROM callbacks"
            " WHERE merchant_id = $1 AND event_type = 'balance.low' ORDER BY id",
            merchant_id,
        )
    )
    return [dict(r) | {"body": json.loads(str(r["payload_json"]))} for r in rows]


async def alerted(db: Database, merchant_id: int, env: str = "test") -> bool | None:
    row = await db.read(
        lambda tx: tx.fetchrow(
            "SELECT alerted FROM balance_alerts WHERE merchant_id = $1 AND env = $2",
            merchant_id,
            env,
        )
    )
    return None if row is None else bool(row["alerted"])


def verified(secret: str, request: Received) -> Any:
    """As a merchant's receiver reads it: the signature checked, then the JSON."""
    assert request.headers["content-type"] == "application/json"
    return Webhook(secret).verify(request.body, request.headers)


async def test_a_merchant_hears_balance_low_once_per_dip(
    db_url: str, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the commands' tables, as on a wide terminal
    async with receiving() as receiver:
        shop = await merchants.create(
            db, "low shop", key=KEY, callback_url=receiver.url, test_credits_paisa=10_000_00
        )
        secret = shop.callback_secrets[Env.TEST]
        # Available 10,000.00; each payment 1,695.00; the threshold 6,000.00.
        await ok(
            db_url, "merchant", "set-low-balance", str(shop.merchant_id), "--below", "6000",
            "--env", "test", "--operator", "ops",
        )  # fmt: skip
        env = {"BHUKTANI_LOW_BALANCE_POLL_S": "0.1", "BHUKTANI_CALLBACK_POLL_S": "0.05"}
        with running_server(db_url, tmp_path / "server.log", **env) as server:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
                for n in range(2):  # 6,610.00: above
                    await pay(http, shop.test_token, f"low-{n}")
                await asyncio.sleep(0.5)
                assert receiver.received == []
                await pay(http, shop.test_token, "low-2")  # 4,915.00: below
                await eventually(lambda: _count(receiver, 1), timeout_s=15)
                event = verified(secret, receiver.received[0])
                assert event["type"] == "balance.low"
                assert event["timestamp"].endswith("+05:45")
                assert event["data"] == {
                    "env": "test",
                    "credits_available": 4915.0,
                    "threshold": 6000.0,
                }

                await pay(http, shop.test_token, "low-3")  # 3,220.00: still below
                await asyncio.sleep(1.0)  # ten polls
                assert len(receiver.received) == 1, "one event per dip"
                assert len(await low_events(db, shop.merchant_id)) == 1

                await merchants.load_credits(db, shop.merchant_id, "test", 5_000_00)  # 8,220.00
                await eventually(lambda: _is(alerted(db, shop.merchant_id), False), timeout_s=15)
                assert len(receiver.received) == 1, "going back above sends nothing"
                for n in range(4, 6):  # 4,830.00: below again
                    await pay(http, shop.test_token, f"low-{n}")
                await eventually(lambda: _count(receiver, 2), timeout_s=15)
                second = verified(secret, receiver.received[1])
                assert second["data"]["credits_available"] == 4830.0
                assert (
                    receiver.received[0].headers["webhook-id"]
                    != (receiver.received[1].headers["webhook-id"])
                )
                await asyncio.sleep(0.5)
                assert len(receiver.received) == 2

                # The operator's view of events: listed with their type, retried (audited).
                listed = json.loads(await ok(db_url, "callbacks", "list", "--json"))
                mine = [row for row in listed if row["merchant_id"] == shop.merchant_id]
                assert [row["event_type"] for row in mine] == ["balance.low", "balance.low"]
                assert all(row["reference"] is None for row in mine)
                assert all(row["status"] == "delivered" for row in mine)
                table = await ok(db_url, "callbacks", "list")
                assert "balance.low" in table
                first_id = str(mine[-1]["id"])
                await ok(db_url, "callbacks", "retry", first_id, "--operator", "ravi")
                await eventually(lambda: _count(receiver, 3), timeout_s=15)
                again = receiver.received[2]
                assert again.headers["webhook-id"] == receiver.received[0].headers["webhook-id"]
                assert verified(secret, again) == event
    entries = await _audit(db, shop.merchant_id)
    assert [(e["action"], e["operator"]) for e in entries] == [
        ("merchant.low_balance", "ops"),
        ("callbacks.retry", "ravi"),
    ]
    assert entries[1]["details"]["event_type"] == "balance.low"
    assert entries[1]["details"]["status_before"] == "delivered"
    await assert_books_balance(db)


async def _count(receiver: Any, count: int) -> bool:
    return len(receiver.received) >= count


async def _is(value: Any, expected: object) -> bool:
    return bool(await value == expected)


async def _audit(db: Database, merchant_id: int) -> list[dict[str, Any]]:
    """This part's entries: thresholds set and callbacks retried."""
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT action, operator, env, details_json FROM audit_log WHERE merchant_id = $1"
            " AND action IN ('merchant.low_balance', 'callbacks.retry') ORDER BY id",
            merchant_id,
        )
    )
    return [dict(r) | {"details": json.loads(str(r["details_json"]))} for r in rows]


async def test_the_operator_sets_and_removes_a_threshold_test_by_default(
    db_url: str, db: Database
) -> None:
    shop = await merchants.create(db, "threshold shop", key=KEY)
    merchant = str(shop.merchant_id)
    await ok(db_url, "merchant", "set-low-balance", merchant, "--below", "100.50", "--env", "live")
    await ok(db_url, "merchant", "set-low-balance", merchant, "--below", "20")
    rows = await alerts.thresholds(db)
    mine = {(r["env"], r["below"]) for r in rows if r["merchant_id"] == shop.merchant_id}
    assert mine == {("live", "100.50"), ("test", "20.00")}

    await ok(db_url, "merchant", "set-low-balance", merchant, "--below", "0", "--env", "LIVE")
    await ok(db_url, "merchant", "set-low-balance", merchant, "--off")
    assert [r for r in await alerts.thresholds(db) if r["merchant_id"] == shop.merchant_id] == []

    for wrong in (["--below", "5", "--off"], [], ["--below", "-5"], ["--below", "x"]):
        done = await bhuktani(db_url, "merchant", "set-low-balance", merchant, *wrong)
        assert done.returncode == 2, (wrong, done)
    unknown = await bhuktani(db_url, "merchant", "set-low-balance", "987654321", "--below", "5")
    assert unknown.returncode == 1 and "no merchant" in unknown.stderr, unknown

    entries = await _audit(db, shop.merchant_id)
    assert [(e["action"], e["env"], e["details"]["below"]) for e in entries] == [
        ("merchant.low_balance", "live", "100.50"),
        ("merchant.low_balance", "test", "20.00"),
        ("merchant.low_balance", "live", None),
        ("merchant.low_balance", "test", None),
    ]
    assert entries[2]["details"]["previous"] == "100.50"


class LoopGateway:
    """What a worker's low-balance loop needs: its own database connection."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings


async def test_two_loops_at_once_still_send_one_event_per_dip(
    db_url: str, client: AppClient
) -> None:
    """Two workers' loops (each with its own connection) and the app's own, polling the
    same thresholds: each dip is told once."""
    db = client.gateway.db
    shop = await merchants.create(
        db,
        "two loops shop",
        key=KEY,
        callback_url="https://merchant.example/hook",
        test_credits_paisa=3 * PRICE_PAISA,
    )
    # 10 rupees above what is left after a payment: every payment dips below it.
    threshold_paisa = 2 * PRICE_PAISA + 10_00
    await alerts.set_threshold(db, shop.merchant_id, "test", threshold_paisa, operator="ops")
    settings = fast_settings(db_url, low_balance_poll_s=0.01)
    stop = asyncio.Event()
    connections = [await connect(db_url) for _ in range(2)]
    loops = [asyncio.create_task(alerts.run(LoopGateway(c, settings), stop)) for c in connections]
    try:
        for dip in range(1, 4):
            await pay(client, shop.test_token, f"loops-{dip}")  # 3,390.00 left: below
            await eventually(lambda: _is(alerted(db, shop.merchant_id), True), timeout_s=10)
            await asyncio.sleep(0.2)  # many rounds of both loops
            assert len(await low_events(db, shop.merchant_id)) == dip
            await merchants.load_credits(db, shop.merchant_id, "test", PRICE_PAISA)
            await eventually(lambda: _is(alerted(db, shop.merchant_id), False), timeout_s=10)
        events = await low_events(db, shop.merchant_id)
        assert [e["body"]["data"]["credits_available"] for e in events] == [3390.0] * 3
        assert all(e["payment_id"] is None for e in events)
    finally:
        stop.set()
        await asyncio.gather(*loops)
        for connection in connections:
            await connection.close()


async def test_rounds_racing_on_one_crossing_queue_one_event(db_url: str, db: Database) -> None:
    shop = await merchants.create(
        db, "race shop", key=KEY, callback_url="https://merchant.example/hook"
    )
    connections = [await connect(db_url) for _ in range(4)]
    try:
        # No LIVE credits: 0 available, below.
        await alerts.set_threshold(db, shop.merchant_id, "live", 1_00, operator="ops")
        for round_ in range(1, 6):
            # Below (no credits), re-armed by hand each time: every connection's round
            # sees the same crossing at once.
            told = await asyncio.gather(*(alerts.check_once(c) for c in connections))
            assert sum(t.alerted for t in told) == 1, told
            assert len(await low_events(db, shop.merchant_id)) == round_
            await db.run(
                lambda tx: tx.execute(
                    "UPDATE balance_alerts SET alerted = $2 WHERE merchant_id = $1",
                    shop.merchant_id,
                    False,
                )
            )
    finally:
        for connection in connections:
            await connection.close()


async def test_no_callback_url_queues_no_event_and_still_marks_the_dip(db: Database) -> None:
    shop = await merchants.create(db, "silent shop", key=KEY)
    await alerts.set_threshold(db, shop.merchant_id, "live", 5_00, operator="ops")
    await alerts.check_once(db)
    assert await alerted(db, shop.merchant_id, "live") is True
    assert await low_events(db, shop.merchant_id) == []
    assert (
        await db.run(
            lambda tx: outbox.enqueue_event(tx, shop.merchant_id, "live", "balance.low", {})
        )
        is None
    )
