"""Operator tools on one payment: show it, resolve a flagged one, refund a reversed one.
Each change is a ledger move plus an audited operator action, never an edit."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bhuktani import audit
from bhuktani.clock import nepal_time
from bhuktani.domain import Env
from bhuktani.isps.base import Paid, Refused, Subscriber
from bhuktani.ledger import accounts as ledger
from bhuktani.ledger.book import book_for
from bhuktani.merchants import service as merchants
from bhuktani.merchants.service import Principal
from bhuktani.payments import operator, records, sessions
from bhuktani.payments.operator import OperatorError, Target
from bhuktani.store import Database, Tx, connect
from bhuktani.store.migrate import upgrade
from tests.conftest import AppClient
from tests.support import (
    KEY,
    arrownet_order,
    assert_books_balance,
    holding_writer_lock,
    new_merchant,
)

AMOUNT_PAISA = 169_500
FAR_FUTURE_MS = 2**62  # no reconciler running beside a test ever picks these up
NOTE = "ISP confirmed by phone, ticket 42"


@dataclass(frozen=True)
class Made:
    payment_id: int
    reference: str
    merchant_id: int


def new_reference() -> str:
    return f"op-{uuid.uuid4().hex[:12]}"


async def open_held(
    db: Database,
    merchant_id: int,
    reference: str | None = None,
    *,
    session_id: int | None = None,
) -> Made:
    """Step 1 of a commit only: the payment is Processing with its credits held."""
    reference = reference or new_reference()
    order = arrownet_order(merchant_id)
    principal = Principal(merchant_id, "test", "all")
    await records.open_payment(
        book_for(db),
        principal,
        "arrownet",
        order,
        reference,
        session_id,
        first_check_ms=FAR_FUTURE_MS,
    )
    return Made(order.payment_id, reference, merchant_id)


async def flagged(db: Database, merchant_id: int, **kw: Any) -> Made:
    """What the reconciler leaves after its window: Processing, held, flagged."""
    made = await open_held(db, merchant_id, **kw)
    await records.flag(db, made.payment_id, "the ISP has not confirmed it in 86400 s")
    return made


async def succeeded(db: Database, merchant_id: int, reference: str | None = None) -> Made:
    made = await open_held(db, merchant_id, reference)
    settled = await records.settle(book_for(db), made.payment_id, Paid("RCPT-1"), next_check_ms=0)
    assert settled.state == "Success"
    return made


async def failed(db: Database, merchant_id: int) -> Made:
    made = await open_held(db, merchant_id)
    settled = await records.settle(
        book_for(db), made.payment_id, Refused("no such plan"), next_check_ms=0
    )
    assert settled.state == "Failed"
    return made


@dataclass(frozen=True)
class Books:
    available_paisa: int
    held_paisa: int
    consumed_paisa: int


async def books(db: Database, merchant_id: int) -> Books:
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT balance_paisa, held_paisa, consumed_paisa FROM accounts"
            " WHERE kind = 'merchant' AND env = 'test' AND merchant_id = $1",
            merchant_id,
        )
    assert row is not None
    return Books(
        int(row["balance_paisa"]) - int(row["held_paisa"]),
        int(row["held_paisa"]),
        int(row["consumed_paisa"]),
    )


async def payment(db: Database, payment_id: int) -> dict[str, Any]:
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT state, isp_status, detail, flagged, next_check_ms FROM payments WHERE id = $1",
            payment_id,
        )
    assert row is not None
    return {**dict(row), "flagged": bool(row["flagged"])}


async def rows(db: Database, table: str, payment_id: int) -> list[dict[str, Any]]:
    assert table in ("operator_actions", "callbacks", "transfers")
    async with db.transaction() as tx:
        found = await tx.fetch(
            f"SELECT * FROM {table} WHERE payment_id = $1 ORDER BY id", payment_id
        )
    return [dict(r) for r in found]


async def with_callback(db: Database) -> merchants.NewMerchant:
    merchant = await new_merchant(db)
    assert await merchants.set_callback_url(
        db, merchant.merchant_id, Env.TEST, "http://127.0.0.1:9/callback"
    )
    return merchant


async def resolve(db: Database, made: Made, *, success: bool, note: str = NOTE) -> Any:
    target = Target(made.reference, made.merchant_id, "test")
    return await operator.resolve(book_for(db), target, success=success, note=note, operator="sita")


async def refund(db: Database, made: Made, amount_paisa: int | None, note: str = NOTE) -> Any:
    target = Target(made.reference, made.merchant_id, "test")
    return await operator.refund(db, target, amount_paisa=amount_paisa, note=note, operator="sita")


# show


async def test_show_lists_the_payment_with_its_transfers(db: Database) -> None:
    merchant = await new_merchant(db)
    made = await succeeded(db, merchant.merchant_id)
    [view] = await operator.show(db, Target(made.reference))
    assert view["id"] == made.payment_id
    assert view["merchant_id"] == merchant.merchant_id
    assert (view["env"], view["service"], view["isp"]) == ("test", "arrownet", "arrownet")
    assert view["username"] == "Pradhanang"
    assert view["amount"] == "1695.00"
    assert (view["state"], view["isp_status"], view["flagged"]) == ("Success", "Paid", False)
    assert view["detail"] == "RCPT-1"
    # Times as every list shows them: Nepal time to the millisecond, the instant stored.
    stored = await db.read(
        lambda tx: tx.fetchrow(
            "SELECT created_ms, updated_ms FROM payments WHERE id = $1", made.payment_id
        )
    )
    assert stored is not None
    assert view["created_at"] == nepal_time(int(stored["created_ms"]))
    assert view["updated_at"] == nepal_time(int(stored["updated_ms"]))
    assert view["created_at"].endswith("+05:45")
    kinds = [(t["kind"], t["amount"], t["debit"], t["credit"]) for t in view["transfers"]]
    merchant_code = f"merchant:{merchant.merchant_id}"
    # The ISP's payable is sharded by payment id (ledger.ISP_SHARDS).
    isp_code = ledger.isp_code("arrownet", made.payment_id)
    assert isp_code.startswith("isp:arrownet/")
    assert kinds == [
        ("pending", "1695.00", merchant_code, isp_code),
        ("post", "1695.00", merchant_code, isp_code),
    ]
    assert view["refunds"] == []
    assert view["refunded_amount"] == "0.00"
    assert view["callbacks"] == []
    assert view["operator_actions"] == []


async def test_show_lists_every_merchant_using_a_reference_and_merchant_narrows_it(
    db: Database,
) -> None:
    first, second = await new_merchant(db), await new_merchant(db)
    reference = new_reference()
    one = await succeeded(db, first.merchant_id, reference)
    two = await open_held(db, second.merchant_id, reference)
    views = await operator.show(db, Target(reference))
    assert {v["id"] for v in views} == {one.payment_id, two.payment_id}
    narrowed = await operator.show(db, Target(reference, second.merchant_id))
    assert [v["id"] for v in narrowed] == [two.payment_id]
    assert await operator.show(db, Target(reference, second.merchant_id, "live")) == []
    assert await operator.show(db, Target(new_reference())) == []


async def test_a_change_refuses_to_guess_between_merchants_sharing_a_reference(
    db: Database,
) -> None:
    first, second = await new_merchant(db), await new_merchant(db)
    reference = new_reference()
    one = await succeeded(db, first.merchant_id, reference)
    await succeeded(db, second.merchant_id, reference)
    with pytest.raises(OperatorError, match="2 payments"):
        await operator.refund(db, Target(reference), amount_paisa=None, note=NOTE, operator="s")
    assert await rows(db, "operator_actions", one.payment_id) == []
    done = await operator.refund(
        db, Target(reference, first.merchant_id), amount_paisa=100, note=NOTE, operator="s"
    )
    assert done.payment_id == one.payment_id
    await assert_books_balance(db)


# resolve


async def test_resolve_success_posts_the_hold_and_queues_the_callback(db: Database) -> None:
    merchant = await with_callback(db)
    before = await books(db, merchant.merchant_id)
    made = await flagged(db, merchant.merchant_id)
    done = await resolve(db, made, success=True)
    assert done.state == "Success"
    found = await payment(db, made.payment_id)
    assert (found["state"], found["isp_status"]) == ("Success", "Operator")
    assert found["next_check_ms"] is None
    after = await books(db, merchant.merchant_id)
    assert after.available_paisa == before.available_paisa - AMOUNT_PAISA, "stays reduced"
    assert after.held_paisa == before.held_paisa
    assert after.consumed_paisa == before.consumed_paisa + AMOUNT_PAISA
    transfers = await rows(db, "transfers", made.payment_id)
    assert [t["kind"] for t in transfers] == ["pending", "post"]
    assert transfers[1]["id"] == done.transfer_id
    [callback] = await rows(db, "callbacks", made.payment_id)
    fields = json.loads(callback["payload_json"])
    assert fields["status"] == "Success"
    assert fields["reference"] == made.reference
    assert fields["amount"] == "1695.00"
    assert fields["response_id"] == str(made.payment_id)
    [action] = await rows(db, "operator_actions", made.payment_id)
    assert action["id"] == done.action_id
    assert action["action"] == "resolve_success"
    assert (action["operator"], action["note"]) == ("sita", NOTE)
    assert action["transfer_id"] == done.transfer_id
    assert int(action["amount_paisa"]) == AMOUNT_PAISA
    await assert_books_balance(db)


async def test_resolve_failed_releases_the_credits_in_full_and_the_session(
    db: Database,
) -> None:
    merchant = await with_callback(db)
    before = await books(db, merchant.merchant_id)
    principal = Principal(merchant.merchant_id, "test", "all")
    subscriber = Subscriber("Pradhanang", "c1", "P", "50Mbps", 3, False, True, ())
    session_id = await sessions.open_session(
        db, sessions.NewSession(principal, "arrownet", "arrownet", subscriber, None, ttl_s=600)
    )
    made = await flagged(db, merchant.merchant_id, session_id=session_id)
    assert (await books(db, merchant.merchant_id)).held_paisa == AMOUNT_PAISA
    done = await resolve(db, made, success=False)
    assert done.state == "Failed"
    found = await payment(db, made.payment_id)
    assert (found["state"], found["isp_status"]) == ("Failed", "Operator")
    assert await books(db, merchant.merchant_id) == before, "credits back in full"
    transfers = await rows(db, "transfers", made.payment_id)
    assert [t["kind"] for t in transfers] == ["pending", "void"]
    [callback] = await rows(db, "callbacks", made.payment_id)
    assert json.loads(callback["payload_json"])["status"] == "Failed"
    [action] = await rows(db, "operator_actions", made.payment_id)
    assert action["action"] == "resolve_failed"
    assert action["transfer_id"] == done.transfer_id
    async with db.transaction() as tx:
        session = await tx.fetchrow("SELECT payment_id FROM sessions WHERE id = $1", session_id)
    assert session is not None and session["payment_id"] is None, "the session is given back"
    await assert_books_balance(db)


async def assert_refused_unchanged(db: Database, made: Made, call: Any, match: str) -> None:
    state = await payment(db, made.payment_id)
    money = await books(db, made.merchant_id)
    transfers = await rows(db, "transfers", made.payment_id)
    with pytest.raises(OperatorError, match=match):
        await call
    assert await payment(db, made.payment_id) == state
    assert await books(db, made.merchant_id) == money
    assert await rows(db, "transfers", made.payment_id) == transfers
    assert await rows(db, "callbacks", made.payment_id) == []
    assert await rows(db, "operator_actions", made.payment_id) == []


async def test_resolve_refuses_a_payment_not_flagged_and_changes_nothing(db: Database) -> None:
    merchant = await with_callback(db)
    made = await open_held(db, merchant.merchant_id)
    for success in (True, False):
        await assert_refused_unchanged(db, made, resolve(db, made, success=success), "not flagged")
    await assert_books_balance(db)


async def test_resolve_refuses_a_final_payment_and_changes_nothing(db: Database) -> None:
    merchant = await with_callback(db)
    for made in (await succeeded(db, merchant.merchant_id), await failed(db, merchant.merchant_id)):
        for success in (True, False):
            await assert_refused_unchanged(
                db, made, resolve(db, made, success=success), "final state never changes"
            )
    await assert_books_balance(db)


async def test_a_second_resolve_is_refused(db: Database) -> None:
    merchant = await new_merchant(db)
    made = await flagged(db, merchant.merchant_id)
    await resolve(db, made, success=True)
    after_first = await books(db, merchant.merchant_id)
    for success in (True, False):
        with pytest.raises(OperatorError, match="is Success"):
            await resolve(db, made, success=success)
    assert await books(db, merchant.merchant_id) == after_first
    assert len(await rows(db, "operator_actions", made.payment_id)) == 1
    assert len(await rows(db, "transfers", made.payment_id)) == 2
    await assert_books_balance(db)


async def test_resolve_needs_a_note_and_an_operator(db: Database) -> None:
    merchant = await with_callback(db)
    made = await flagged(db, merchant.merchant_id)
    for note in ("", "   ", "x" * 501):
        await assert_refused_unchanged(db, made, resolve(db, made, success=True, note=note), "note")
    target = Target(made.reference, made.merchant_id, "test")
    await assert_refused_unchanged(
        db,
        made,
        operator.resolve(book_for(db), target, success=True, note=NOTE, operator=" "),
        "operator",
    )
    assert (await payment(db, made.payment_id))["state"] == "Processing"
    await assert_books_balance(db)


async def test_two_resolves_at_once_apply_once(db_url: str) -> None:
    setup = await connect(db_url)
    merchant = await new_merchant(setup)
    before = await books(setup, merchant.merchant_id)
    made = await flagged(setup, merchant.merchant_id)
    first, second = await connect(db_url), await connect(db_url)
    try:
        results = await asyncio.gather(
            resolve(first, made, success=True),
            resolve(second, made, success=False),
            return_exceptions=True,
        )
        done = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, OperatorError)]
        assert len(done) == 1 and len(refused) == 1, results
        expected = before.available_paisa - (AMOUNT_PAISA if done[0].state == "Success" else 0)
        assert (await books(setup, merchant.merchant_id)).available_paisa == expected
        assert len(await rows(setup, "operator_actions", made.payment_id)) == 1
        await assert_books_balance(setup)
    finally:
        for database in (first, second, setup):
            await database.close()


# refund


async def test_refund_part_then_the_rest(db: Database) -> None:
    merchant = await new_merchant(db)
    made = await succeeded(db, merchant.merchant_id)
    before = await books(db, merchant.merchant_id)
    part = await refund(db, made, 50_000, note="ISP reversed half")
    assert (part.amount_paisa, part.refunded_paisa, part.left_paisa) == (50_000, 50_000, 119_500)
    after_part = await books(db, merchant.merchant_id)
    assert after_part.available_paisa == before.available_paisa + 50_000
    assert after_part.consumed_paisa == before.consumed_paisa - 50_000
    assert after_part.held_paisa == before.held_paisa
    await assert_books_balance(db)
    rest = await refund(db, made, None, note="and the rest")
    assert (rest.amount_paisa, rest.refunded_paisa, rest.left_paisa) == (119_500, AMOUNT_PAISA, 0)
    after_rest = await books(db, merchant.merchant_id)
    assert after_rest.available_paisa == before.available_paisa + AMOUNT_PAISA
    assert after_rest.consumed_paisa == before.consumed_paisa - AMOUNT_PAISA
    assert (await payment(db, made.payment_id))["state"] == "Success", "a final state stays"
    transfers = await rows(db, "transfers", made.payment_id)
    refunds = [t for t in transfers if t["kind"] == "single"]
    assert [(int(t["amount_paisa"]), t["note"]) for t in refunds] == [
        (50_000, "ISP reversed half"),
        (119_500, "and the rest"),
    ]
    assert [t["id"] for t in refunds] == [part.transfer_id, rest.transfer_id]
    isp = {t["debit_account_id"] for t in refunds}
    assert isp == {transfers[0]["credit_account_id"]}, "from the ISP's account"
    assert {t["credit_account_id"] for t in refunds} == {transfers[0]["debit_account_id"]}
    actions = await rows(db, "operator_actions", made.payment_id)
    assert [(a["action"], int(a["amount_paisa"]), a["transfer_id"]) for a in actions] == [
        ("refund", 50_000, part.transfer_id),
        ("refund", 119_500, rest.transfer_id),
    ]
    [view] = await operator.show(db, Target(made.reference))
    assert view["refunded_amount"] == "1695.00"
    assert [r["amount"] for r in view["refunds"]] == ["500.00", "1195.00"]
    assert [a["action"] for a in view["operator_actions"]] == ["refund", "refund"]
    await assert_books_balance(db)
    await assert_refused_unchanged_after_refunds(db, made, refund(db, made, None), "in full")


async def assert_refused_unchanged_after_refunds(
    db: Database, made: Made, call: Any, match: str
) -> None:
    money = await books(db, made.merchant_id)
    transfers = await rows(db, "transfers", made.payment_id)
    actions = await rows(db, "operator_actions", made.payment_id)
    with pytest.raises(OperatorError, match=match):
        await call
    assert await books(db, made.merchant_id) == money
    assert await rows(db, "transfers", made.payment_id) == transfers
    assert await rows(db, "operator_actions", made.payment_id) == actions


async def test_refund_over_what_is_left_is_refused(db: Database) -> None:
    merchant = await new_merchant(db)
    made = await succeeded(db, merchant.merchant_id)
    await assert_refused_unchanged(db, made, refund(db, made, AMOUNT_PAISA + 1), "exceeds")
    await refund(db, made, 100_000)
    await assert_refused_unchanged_after_refunds(db, made, refund(db, made, 69_501), "exceeds")
    for amount in (0, -100):
        await assert_refused_unchanged_after_refunds(db, made, refund(db, made, amount), "positive")
    await assert_refused_unchanged_after_refunds(db, made, refund(db, made, 100, note=" "), "note")
    await assert_books_balance(db)


async def test_refund_of_a_failed_or_processing_payment_is_refused(db: Database) -> None:
    merchant = await new_merchant(db)
    for made in (
        await failed(db, merchant.merchant_id),
        await open_held(db, merchant.merchant_id),
        await flagged(db, merchant.merchant_id),
    ):
        await assert_refused_unchanged(db, made, refund(db, made, None), "only a Success payment")
    await assert_books_balance(db)


async def test_status_look_up_shows_the_refunds(client: AppClient) -> None:
    db = client.gateway.db
    merchant = await new_merchant(db)
    reference = new_reference()
    response = await client.post(
        "/api/servicegroup/commit/arrownet/",
        json={
            "token": merchant.test_token,
            "username": "Pradhanang",
            "amount": "1695.00",
            "duration": 1,
            "reference": reference,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "Success"
    balance_before = (
        await client.get("/api/balance", params={"token": merchant.test_token})
    ).json()
    made = Made(int(response.json()["id"]), reference, merchant.merchant_id)
    await refund(db, made, 50_050, note="ISP reversed part of it")
    status = await client.get(
        "/api/service/status/", params={"token": merchant.test_token, "reference": reference}
    )
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["state"] == "Success"
    assert body["refunded"] is True
    assert body["refunded_amount"] == 500.5
    [entry] = body["refunds"]
    assert entry["remarks"] == "ISP reversed part of it"
    assert entry["amount"] == 500.5
    assert entry["created_at"]
    balance_after = (await client.get("/api/balance", params={"token": merchant.test_token})).json()
    assert balance_after["credits_available"] == pytest.approx(
        balance_before["credits_available"] + 500.5
    )
    assert balance_after["credits_consumed"] == pytest.approx(
        balance_before["credits_consumed"] - 500.5
    )
    await assert_books_balance(db)


async def test_two_refunds_at_once_never_exceed_the_payment(db_url: str) -> None:
    setup = await connect(db_url)
    merchant = await new_merchant(setup)
    made = await succeeded(setup, merchant.merchant_id)
    before = await books(setup, merchant.merchant_id)
    first, second = await connect(db_url), await connect(db_url)
    try:
        for _ in range(3):
            results = await asyncio.gather(
                refund(first, made, 100_000),
                refund(second, made, 100_000),
                return_exceptions=True,
            )
            assert all(isinstance(r, (operator.Refunded, OperatorError)) for r in results), results
        refunds = [
            t for t in await rows(setup, "transfers", made.payment_id) if t["kind"] == "single"
        ]
        assert [int(t["amount_paisa"]) for t in refunds] == [100_000], "exactly one fitted"
        after = await books(setup, merchant.merchant_id)
        assert after.available_paisa == before.available_paisa + 100_000
        assert len(await rows(setup, "operator_actions", made.payment_id)) == 1
        await assert_books_balance(setup)
    finally:
        for database in (first, second, setup):
            await database.close()


# the audit log


async def test_a_resolve_and_a_refund_are_audited_in_their_transaction(db: Database) -> None:
    merchant = await new_merchant(db)
    made = await flagged(db, merchant.merchant_id)
    await resolve(db, made, success=True, note="ISP confirmed")
    await refund(db, made, 50_000, note="ISP reversed half")
    entries = await audit.listing(db, merchant_id=merchant.merchant_id, action="payment")
    assert [(e["action"], e["env"], e["subject"], e["operator"]) for e in entries] == [
        ("payment.refund", "test", made.reference, "sita"),
        ("payment.resolve", "test", made.reference, "sita"),
    ]
    refunded, resolved = entries[0]["details"], entries[1]["details"]
    assert (resolved["amount"], resolved["state"], resolved["note"]) == (
        "1695.00",
        "Success",
        "ISP confirmed",
    )
    assert (refunded["amount"], refunded["state"], refunded["note"]) == (
        "500.00",
        "Success",
        "ISP reversed half",
    )


async def test_a_refused_refund_is_not_audited(db: Database) -> None:
    merchant = await new_merchant(db)
    made = await failed(db, merchant.merchant_id)
    with pytest.raises(OperatorError):
        await refund(db, made, None)
    assert await audit.listing(db, merchant_id=merchant.merchant_id, action="payment") == []


class RolledBack(Exception):
    pass


async def test_refund_in_runs_in_the_callers_transaction(db: Database) -> None:
    merchant = await new_merchant(db)
    made = await succeeded(db, merchant.merchant_id)
    before = await books(db, merchant.merchant_id)
    target = Target(made.reference, made.merchant_id, "test")

    async def refund_then_fail(tx: Tx) -> None:
        done = await operator.refund_in(tx, target, amount_paisa=100, note=NOTE, operator="e")
        assert done.amount_paisa == 100
        raise RolledBack()

    with pytest.raises(RolledBack):
        await db.run(refund_then_fail)
    # The caller's rollback took the refund, its operator action and its audit entry.
    assert await books(db, merchant.merchant_id) == before
    assert await rows(db, "operator_actions", made.payment_id) == []
    assert await audit.listing(db, merchant_id=merchant.merchant_id, action="payment") == []

    async def refund_in_full(tx: Tx) -> operator.Refunded:
        return await operator.refund_in(tx, target, amount_paisa=None, note=NOTE, operator="e")

    done = await db.run(refund_in_full)
    assert (done.amount_paisa, done.left_paisa) == (AMOUNT_PAISA, 0)
    assert (await books(db, merchant.merchant_id)).available_paisa == (
        before.available_paisa + AMOUNT_PAISA
    )
    await assert_books_balance(db)


# the CLI, as an operator runs it


def cli_env(db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BHUKTANI_")}
    env["BHUKTANI_DATABASE_URL"] = db_url
    return env


async def bhuktani(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bhuktani", "payment", *args],
            env=cli_env(db_url),
            capture_output=True,
            text=True,
            timeout=60,
        )

    return await asyncio.to_thread(run)


async def ok(db_url: str, *args: str) -> str:
    done = await bhuktani(db_url, *args)
    assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def refused(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert "Traceback" not in output, output
    return output


async def test_cli_show_resolve_and_refund(db_url: str, db: Database) -> None:
    merchant = await with_callback(db)
    made = await flagged(db, merchant.merchant_id)
    where = ("--merchant", str(merchant.merchant_id), "--env", "test")
    [view] = json.loads(await ok(db_url, "show", made.reference, "--json"))
    assert (view["id"], view["state"], view["flagged"]) == (made.payment_id, "Processing", True)
    text = await ok(db_url, "show", made.reference, *where)
    assert str(made.payment_id) in text and "pending" in text

    out = await ok(db_url, "resolve", made.reference, "--success", "--note", NOTE, *where)
    assert f"payment {made.payment_id} is Success" in out
    [view] = json.loads(await ok(db_url, "show", made.reference, "--json", *where))
    assert (view["state"], view["isp_status"]) == ("Success", "Operator")
    [action] = view["operator_actions"]
    assert (action["action"], action["note"], action["amount"]) == (
        "resolve_success",
        NOTE,
        "1695.00",
    )
    assert action["operator"], "the OS user is recorded"
    assert [c["status"] for c in view["callbacks"]] == ["pending"]
    await assert_books_balance(db)

    before = await books(db, merchant.merchant_id)
    refund_95 = ("--amount", "95", "--note", "reversed", "--operator", "ram")
    out = await ok(db_url, "refund", made.reference, *refund_95, *where)
    assert "refunded 95.00" in out and "1,600.00 left" in out
    assert (await books(db, merchant.merchant_id)).available_paisa == before.available_paisa + 9500
    await ok(db_url, "refund", made.reference, "--note", "the rest", *where)
    [view] = json.loads(await ok(db_url, "show", made.reference, "--json"))
    assert view["refunded_amount"] == "1695.00"
    assert [(r["amount"], r["note"]) for r in view["refunds"]] == [
        ("95.00", "reversed"),
        ("1600.00", "the rest"),
    ]
    assert [(a["action"], a["operator"]) for a in view["operator_actions"]][1:] == [
        ("refund", "ram"),
        ("refund", action["operator"]),
    ]
    await assert_books_balance(db)


async def test_cli_refusals_exit_non_zero_and_change_nothing(db_url: str, db: Database) -> None:
    merchant = await with_callback(db)
    held = await open_held(db, merchant.merchant_id)
    paid = await succeeded(db, merchant.merchant_id)
    held_before = await payment(db, held.payment_id)
    money_before = await books(db, merchant.merchant_id)

    assert "not flagged" in refused(
        await bhuktani(db_url, "resolve", held.reference, "--success", "--note", NOTE)
    )
    assert "final state" in refused(
        await bhuktani(db_url, "resolve", paid.reference, "--failed", "--note", NOTE)
    )
    assert "Success payment" in refused(
        await bhuktani(db_url, "refund", held.reference, "--note", NOTE)
    )
    assert "exceeds" in refused(
        await bhuktani(db_url, "refund", paid.reference, "--amount", "1695.01", "--note", NOTE)
    )
    assert "no payment" in refused(
        await bhuktani(db_url, "refund", new_reference(), "--note", NOTE)
    )
    assert "no payment" in refused(await bhuktani(db_url, "show", new_reference()))
    # Usage errors (exit 2): no note, both outcomes or none, a bad amount, a bad env.
    usage = [
        ("resolve", held.reference, "--success"),
        ("resolve", held.reference, "--success", "--failed", "--note", NOTE),
        ("resolve", held.reference, "--note", NOTE),
        ("refund", paid.reference, "--note", NOTE, "--amount", "1.001"),
        ("refund", paid.reference, "--note", NOTE, "--amount", "0"),
        ("refund", paid.reference, "--note", NOTE, "--amount", "-5"),
        ("show", paid.reference, "--env", "prod"),
    ]
    results = await asyncio.gather(*(bhuktani(db_url, *args) for args in usage))
    for args, done in zip(usage, results, strict=True):
        assert done.returncode == 2, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stdout + done.stderr
    assert await payment(db, held.payment_id) == held_before
    assert await books(db, merchant.merchant_id) == money_before
    for made in (held, paid):
        assert await rows(db, "operator_actions", made.payment_id) == []
        assert await rows(db, "callbacks", made.payment_id) == []
    await assert_books_balance(db)


async def test_on_sqlite_admin_writes_queue_for_the_write_lock_with_the_payments(
    tmp_path: Path,
) -> None:
    """An operator's credit load, a new merchant or a revoked token, from the CLI beside a
    running server, wait in the kernel's queue for the writer lock, in turn with the
    payments' groups (here this test holds that lock, as the server would), not in
    SQLite's busy wait, where at peak they could starve and fail 'database is locked'."""
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(url)
    db = await connect(url)
    try:
        merchant = await merchants.create(db, "admin", key=KEY)
        with holding_writer_lock(tmp_path / "admin.db"):
            load = asyncio.create_task(
                merchants.load_credits(db, merchant.merchant_id, "test", 1_000_000)
            )
            await asyncio.sleep(0.3)
            assert not load.done(), "the credit load went ahead of the writer lock's holder"
        await asyncio.wait_for(load, 5)
        with holding_writer_lock(tmp_path / "admin.db"):
            created = asyncio.create_task(merchants.create(db, "second", key=KEY))
            revoked = asyncio.create_task(merchants.revoke_token(db, merchant.test_token, key=KEY))
            await asyncio.sleep(0.3)
            assert not created.done(), "the new merchant went ahead of the writer lock's holder"
            assert not revoked.done(), "the revocation went ahead of the writer lock's holder"
        assert (await asyncio.wait_for(created, 5)).merchant_id != merchant.merchant_id
        assert await asyncio.wait_for(revoked, 5) is True
        paid = await succeeded(db, merchant.merchant_id)
        stuck = await flagged(db, merchant.merchant_id)
        with holding_writer_lock(tmp_path / "admin.db"):
            refunded = asyncio.create_task(
                operator.refund(
                    db, Target(paid.reference), amount_paisa=None, note="reversed", operator="op"
                )
            )
            resolved = asyncio.create_task(
                operator.resolve(
                    book_for(db), Target(stuck.reference), success=False, note="lost", operator="op"
                )
            )
            await asyncio.sleep(0.3)
            assert not refunded.done(), "the refund went ahead of the writer lock's holder"
            assert not resolved.done(), "the resolution went ahead of the writer lock's holder"
        assert (await asyncio.wait_for(refunded, 5)).left_paisa == 0
        assert (await asyncio.wait_for(resolved, 5)).state == "Failed"
        await assert_books_balance(db)
    finally:
        await db.close()
