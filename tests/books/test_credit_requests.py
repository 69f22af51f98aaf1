"""Credit requests: a merchant asks over HTTP (balance_check.md, "Credit Request API"),
the operator lists, approves (a ledger load) or rejects them with `bhuktani credits`; and
the operator's own load, audited. Merchants call a real server; the operator runs the
commands in processes of their own."""

from __future__ import annotations

import asyncio
import getpass
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bhuktani import audit, money
from bhuktani.books import credit_requests
from bhuktani.clock import now_ms
from bhuktani.merchants.service import NewMerchant
from bhuktani.store import Database, connect
from tests.cli.test_commands import bhuktani, ok
from tests.support import Server, assert_books_balance, new_merchant

PATH = "/api/public/creditrequest/"
INVALID = {"status": False, "detail": "Invalid Credit"}
TOO_MANY = {"status": False, "detail": credit_requests.TOO_MANY_PENDING}


async def ask(server: Server, body: dict[str, Any] | bytes, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        if isinstance(body, bytes):
            headers["content-type"] = "application/json"
            return await http.post(PATH, content=body, headers=headers)
        return await http.post(PATH, json=body, headers=headers)


async def requested(server: Server, token: str, credit: object) -> int:
    response = await ask(server, {"token": token, "credit": credit})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] is True and body["detail"] == "Credit Requested", body
    return int(body["request_id"])


async def available(server: Server, token: str) -> float:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        response = await http.get("/api/balance/", headers={"Authorization": f"Token {token}"})
    assert response.status_code == 200, response.text
    return float(response.json()["credits_available"])


async def stored(db: Database, merchant_id: int) -> list[dict[str, Any]]:
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT id, env, amount_paisa, status, decided_by, note, transfer_id"
            " FROM credit_requests WHERE merchant_id = $1 ORDER BY id",
            merchant_id,
        )
    )
    return [dict(row) for row in rows]


async def loads_of(db: Database, merchant_id: int) -> list[dict[str, Any]]:
    """Every transfer into the merchant's accounts from a funding account."""
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT t.id, t.amount_paisa, t.note, c.env FROM transfers t"
            " JOIN accounts d ON d.id = t.debit_account_id"
            " JOIN accounts c ON c.id = t.credit_account_id"
            " WHERE c.merchant_id = $1 AND d.kind = 'funding' ORDER BY t.id",
            merchant_id,
        )
    )
    return [dict(row) for row in rows]


async def shop(db: Database) -> NewMerchant:
    return await new_merchant(db, test_rupees=100, live_rupees=50)


async def test_a_credit_request_answers_the_documented_body_and_is_stored(
    server: Server, db: Database
) -> None:
    merchant = await shop(db)

    response = await ask(server, {"token": merchant.test_token, "credit": 5000})

    assert response.status_code == 200
    body = response.json()
    assert body == {"status": True, "detail": "Credit Requested", "request_id": body["request_id"]}
    assert isinstance(body["request_id"], int)
    [row] = await stored(db, merchant.merchant_id)
    assert (row["id"], row["env"], row["amount_paisa"], row["status"]) == (
        body["request_id"],
        "test",
        5000_00,
        "pending",
    )
    assert row["transfer_id"] is None
    assert await available(server, merchant.test_token) == 100.0, "a request moves nothing"


async def test_credit_is_a_json_number_or_a_numeric_string_in_the_header_tokens_call_too(
    server: Server, db: Database
) -> None:
    merchant = await shop(db)
    auth = {"authorization": f"Token {merchant.test_token}"}

    sent = [
        await ask(server, {"credit": "250.50"}, **auth),
        await ask(server, b'{"credit": 99.9}', **auth),
        await ask(server, {"token": merchant.test_token, "credit": " 1000 "}),
        await ask(server, b'{"credit": 1e3}', **auth),
    ]

    assert [r.status_code for r in sent] == [200] * 4, [r.text for r in sent]
    assert [row["amount_paisa"] for row in await stored(db, merchant.merchant_id)] == [
        250_50,
        99_90,
        1000_00,
        1000_00,
    ]


INVALID_BODIES: list[bytes] = [
    b"{}",
    b'{"credit": ""}',
    b'{"credit": "abc"}',
    b'{"credit": 0}',
    b'{"credit": "0.00"}',
    b'{"credit": -5}',
    b'{"credit": "-5"}',
    b'{"credit": 1.234}',
    b'{"credit": "1.234"}',
    b'{"credit": 1e30}',
    b'{"credit": 10000000000001}',
    b'{"credit": 1e999999}',
    b'{"credit": true}',
    b'{"credit": null}',
    b'{"credit": [5]}',
    b'{"credit": {"amount": 5}}',
    b'{"credit": "5 00"}',
]


async def test_every_invalid_credit_answers_invalid_credit_and_stores_nothing(
    server: Server, db: Database
) -> None:
    merchant = await shop(db)
    auth = {"authorization": f"Token {merchant.test_token}"}

    answers = await asyncio.gather(*(ask(server, body, **auth) for body in INVALID_BODIES))

    for body, response in zip(INVALID_BODIES, answers, strict=True):
        assert response.status_code == 400, (body, response.text)
        assert response.json() == INVALID, (body, response.text)
    assert await stored(db, merchant.merchant_id) == []


async def test_the_largest_load_may_be_asked_for_and_a_paisa_more_may_not(
    server: Server, db: Database
) -> None:
    merchant = await shop(db)
    largest = money.MAX_LOAD_PAISA

    await requested(server, merchant.test_token, money.format_rupees(largest))
    over = await ask(
        server,
        {
            "token": merchant.test_token,
            "credit": money.format_rupees(largest + 1),
        },
    )

    assert over.status_code == 400 and over.json() == INVALID
    assert [r["amount_paisa"] for r in await stored(db, merchant.merchant_id)] == [largest]


async def test_token_refusals_keep_the_standard_envelope(server: Server, db: Database) -> None:
    missing = await ask(server, {"credit": 5})
    unknown = await ask(server, {"token": "TEST:not-a-token-of-anyone", "credit": 5})

    assert missing.status_code == 400 and missing.json()["error_code"] == "1001", missing.text
    assert unknown.status_code == 400 and unknown.json()["error_code"] == "1002", unknown.text
    assert missing.json()["state"] == "Error"


async def test_a_test_token_asks_for_test_credits_and_a_live_token_for_live(
    server: Server, db: Database, db_url: str
) -> None:
    merchant = await shop(db)

    test_id = await requested(server, merchant.test_token, 10)
    live_id = await requested(server, merchant.live_token, 20)

    rows = {row["id"]: row for row in await stored(db, merchant.merchant_id)}
    assert (rows[test_id]["env"], rows[test_id]["amount_paisa"]) == ("test", 10_00)
    assert (rows[live_id]["env"], rows[live_id]["amount_paisa"]) == ("live", 20_00)
    mine = ("--merchant", str(merchant.merchant_id), "--json")
    live = json.loads(await ok(db_url, "credits", "requests", *mine, "--env", "live"))
    test = json.loads(await ok(db_url, "credits", "requests", *mine, "--env", "test"))
    assert [r["id"] for r in live] == [live_id]
    assert [r["id"] for r in test] == [test_id]


async def test_the_21st_pending_request_is_refused_until_one_is_decided(
    server: Server, db: Database
) -> None:
    merchant = await shop(db)
    ids = [await requested(server, merchant.test_token, 1) for _ in range(20)]

    refused = await ask(server, {"token": merchant.test_token, "credit": 1})

    assert refused.status_code == 400 and refused.json() == TOO_MANY, refused.text
    assert len(await stored(db, merchant.merchant_id)) == 20
    # The other environment's queue is its own.
    await requested(server, merchant.live_token, 1)
    await credit_requests.reject(db, ids[0], operator="ana", note="one at a time")
    await requested(server, merchant.test_token, 1)
    refused_again = await ask(server, {"token": merchant.test_token, "credit": 1})
    assert refused_again.json() == TOO_MANY


async def test_requests_at_once_never_pass_the_bound(server: Server, db: Database) -> None:
    merchant = await shop(db)

    answers = await asyncio.gather(
        *(ask(server, {"token": merchant.test_token, "credit": 1}) for _ in range(30))
    )

    assert sorted(r.status_code for r in answers) == [200] * 20 + [400] * 10
    assert all(r.json() == TOO_MANY for r in answers if r.status_code == 400)
    assert len(await stored(db, merchant.merchant_id)) == 20


async def audit_entries(db: Database, merchant_id: int, action: str) -> list[dict[str, Any]]:
    return await audit.listing(db, merchant_id=merchant_id, action=action)


async def test_approve_loads_exactly_the_amount_once_and_is_audited(
    server: Server, db: Database, db_url: str
) -> None:
    merchant = await shop(db)
    request_id = await requested(server, merchant.test_token, "1234.56")
    live_before = await available(server, merchant.live_token)
    pending = json.loads(
        await ok(db_url, "credits", "requests", "--json", "--merchant", str(merchant.merchant_id))
    )
    assert [(r["id"], r["amount"], r["status"]) for r in pending] == [
        (request_id, "1234.56", "pending")
    ]

    out = await ok(
        db_url, "credits", "approve", str(request_id), "--operator", "ana", "--note", "paid",
        "--json",
    )  # fmt: skip

    done = json.loads(out)
    assert done["status"] == "approved" and done["amount"] == "1234.56"
    assert await available(server, merchant.test_token) == 100.0 + 1234.56
    assert await available(server, merchant.live_token) == live_before
    [row] = await stored(db, merchant.merchant_id)
    assert (row["status"], row["decided_by"], row["note"]) == ("approved", "ana", "paid")
    loads = await loads_of(db, merchant.merchant_id)
    assert loads[-1]["id"] == row["transfer_id"] == done["transfer_id"]
    assert (loads[-1]["amount_paisa"], loads[-1]["note"], loads[-1]["env"]) == (
        1234_56,
        f"credit request {request_id}",
        "test",
    )
    [entry] = await audit_entries(db, merchant.merchant_id, "credits.approve")
    assert (entry["operator"], entry["env"], entry["subject"]) == ("ana", "test", str(request_id))
    assert entry["details"]["amount"] == "1234.56"
    assert entry["details"]["transfer_id"] == row["transfer_id"]
    assert entry["id"] == done["audit_id"]

    again = await bhuktani(db_url, "credits", "approve", str(request_id), "--operator", "bo")
    rejected_after = await bhuktani(db_url, "credits", "reject", str(request_id), "--note", "x")

    for refused in (again, rejected_after):
        assert refused.returncode == 1, refused
        assert f"credit request {request_id} is already approved" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert await available(server, merchant.test_token) == 100.0 + 1234.56
    assert len(await loads_of(db, merchant.merchant_id)) == len(loads)
    assert len(await audit_entries(db, merchant.merchant_id, "credits")) == 1
    await assert_books_balance(db)


async def test_reject_moves_nothing_and_a_later_approve_refuses(
    server: Server, db: Database, db_url: str
) -> None:
    merchant = await shop(db)
    request_id = await requested(server, merchant.live_token, 700)
    loads = await loads_of(db, merchant.merchant_id)

    out = await ok(
        db_url, "credits", "reject", str(request_id), "--note", "no invoice", "--operator", "bo",
        "--json",
    )  # fmt: skip
    approve = await bhuktani(db_url, "credits", "approve", str(request_id))

    assert json.loads(out)["status"] == "rejected" and json.loads(out)["transfer_id"] is None
    assert approve.returncode == 1
    assert f"credit request {request_id} is already rejected" in approve.stderr
    assert await available(server, merchant.live_token) == 50.0
    assert await loads_of(db, merchant.merchant_id) == loads
    [row] = await stored(db, merchant.merchant_id)
    assert (row["status"], row["note"], row["transfer_id"]) == ("rejected", "no invoice", None)
    [entry] = await audit_entries(db, merchant.merchant_id, "credits.reject")
    assert (entry["operator"], entry["env"]) == ("bo", "live")
    assert entry["details"] == {"amount": "700.00", "request_id": request_id, "note": "no invoice"}
    assert await audit_entries(db, merchant.merchant_id, "credits.approve") == []
    await assert_books_balance(db)


async def test_reject_requires_a_note_and_an_unknown_request_refuses(
    db: Database, db_url: str
) -> None:
    merchant = await shop(db)
    request_id = await ask_directly(db, merchant.merchant_id, "test", 5_00)

    no_note = await bhuktani(db_url, "credits", "reject", str(request_id))
    blank = await bhuktani(db_url, "credits", "reject", str(request_id), "--note", "  ")
    unknown = await bhuktani(db_url, "credits", "approve", "987654321")

    assert no_note.returncode == 2, no_note
    assert blank.returncode == 1 and "note is required" in blank.stderr, blank
    assert unknown.returncode == 1 and "no credit request 987654321" in unknown.stderr
    assert [row["status"] for row in await stored(db, merchant.merchant_id)] == ["pending"]


async def ask_directly(
    db: Database, merchant_id: int, env: str, amount_paisa: int, created_ms: int | None = None
) -> int:
    """A pending request as the API stores it, for tests of the operator's side alone."""
    row = await db.run(
        lambda tx: tx.fetchrow(
            "INSERT INTO credit_requests (merchant_id, env, amount_paisa, status, created_ms)"
            " VALUES ($1, $2, $3, 'pending', $4) RETURNING id",
            merchant_id,
            env,
            amount_paisa,
            now_ms() if created_ms is None else created_ms,
        )
    )
    assert row is not None
    return int(row["id"])


async def test_two_approves_at_once_load_once(db: Database, db_url: str) -> None:
    merchant = await shop(db)
    request_id = await ask_directly(db, merchant.merchant_id, "test", 300_00)
    loads = len(await loads_of(db, merchant.merchant_id))
    others = [await connect(db_url), await connect(db_url)]
    try:
        outcomes = await asyncio.gather(
            *(credit_requests.approve(other, request_id, operator="ana") for other in others),
            return_exceptions=True,
        )
    finally:
        for other in others:
            await other.close()

    approved = [o for o in outcomes if isinstance(o, credit_requests.Decided)]
    refused = [o for o in outcomes if isinstance(o, credit_requests.CreditRequestError)]
    assert len(approved) == 1 and len(refused) == 1, outcomes
    assert "already approved" in str(refused[0])
    after = await loads_of(db, merchant.merchant_id)
    assert len(after) == loads + 1 and after[-1]["amount_paisa"] == 300_00
    assert len(await audit_entries(db, merchant.merchant_id, "credits.approve")) == 1
    await assert_books_balance(db)


async def test_two_operators_approving_at_once_load_once(db: Database, db_url: str) -> None:
    merchant = await shop(db)
    request_id = await ask_directly(db, merchant.merchant_id, "live", 40_00)

    runs = await asyncio.gather(
        *(bhuktani(db_url, "credits", "approve", str(request_id)) for _ in range(2))
    )

    assert sorted(done.returncode for done in runs) == [0, 1], runs
    loads = await loads_of(db, merchant.merchant_id)
    assert [load["amount_paisa"] for load in loads if load["env"] == "live"] == [50_00, 40_00]
    await assert_books_balance(db)


async def test_approving_a_deleted_merchants_request_refuses_and_it_stays_pending(
    db: Database, db_url: str
) -> None:
    merchant = await shop(db)
    request_id = await ask_directly(db, merchant.merchant_id, "test", 10_00)
    loads = await loads_of(db, merchant.merchant_id)
    await db.run(
        lambda tx: tx.execute(
            "UPDATE merchants SET status = 'deleted' WHERE id = $1", merchant.merchant_id
        )
    )

    done = await bhuktani(db_url, "credits", "approve", str(request_id))

    assert done.returncode == 1, done
    assert f"merchant {merchant.merchant_id} is deleted" in done.stderr
    assert [row["status"] for row in await stored(db, merchant.merchant_id)] == ["pending"]
    assert await loads_of(db, merchant.merchant_id) == loads
    assert await audit_entries(db, merchant.merchant_id, "credits") == []
    # The operator clears it by rejecting it.
    await ok(db_url, "credits", "reject", str(request_id), "--note", "merchant deleted")
    assert [row["status"] for row in await stored(db, merchant.merchant_id)] == ["rejected"]


async def test_credits_load_is_audited_with_its_operator(
    server: Server, db: Database, db_url: str
) -> None:
    merchant = await shop(db)

    out = await ok(
        db_url, "credits", "load", str(merchant.merchant_id), "250.25", "--env", "test",
        "--operator", "ana", "--note", "top-up", "--json",
    )  # fmt: skip
    await ok(db_url, "credits", "load", str(merchant.merchant_id), "1", "--env", "live")

    done = json.loads(out)
    assert (done["amount"], done["available"]) == ("250.25", "350.25")
    assert await available(server, merchant.test_token) == 350.25
    assert await available(server, merchant.live_token) == 51.0
    entries = await audit_entries(db, merchant.merchant_id, "credits.load")
    by_env = {entry["env"]: entry for entry in entries}
    assert by_env["test"]["operator"] == "ana"
    assert by_env["test"]["details"] == {
        "amount": "250.25",
        "transfer_id": done["transfer_id"],
        "note": "top-up",
    }
    assert by_env["live"]["operator"] == getpass.getuser()
    assert by_env["live"]["details"]["amount"] == "1.00"
    await assert_books_balance(db)


async def test_a_failed_load_leaves_no_audit_entry(db: Database, db_url: str) -> None:
    merchant = await shop(db)
    await db.run(
        lambda tx: tx.execute(
            "UPDATE merchants SET status = 'deleted' WHERE id = $1", merchant.merchant_id
        )
    )
    loads = await loads_of(db, merchant.merchant_id)

    done = await bhuktani(db_url, "credits", "load", str(merchant.merchant_id), "5")

    assert done.returncode == 1 and "is deleted" in done.stderr, done
    assert await loads_of(db, merchant.merchant_id) == loads
    assert await audit_entries(db, merchant.merchant_id, "credits") == []


async def test_the_listing_shows_oldest_first_in_rupees_and_nepal_time(
    db: Database, db_url: str
) -> None:
    merchant = await shop(db)
    first = await ask_directly(db, merchant.merchant_id, "test", 5_00)
    second = await ask_directly(db, merchant.merchant_id, "live", 12345_67)
    third = await ask_directly(db, merchant.merchant_id, "test", 1_00)
    await credit_requests.reject(db, third, operator="ana", note="duplicate")
    mine = ("--merchant", str(merchant.merchant_id))

    table = await ok(db_url, "credits", "requests", *mine)
    every = json.loads(await ok(db_url, "credits", "requests", *mine, "--status", "all", "--json"))
    rejected = json.loads(
        await ok(db_url, "credits", "requests", *mine, "--status", "rejected", "--json")
    )

    assert [r["id"] for r in every] == [first, second, third]
    assert [r["id"] for r in rejected] == [third] and rejected[0]["decided_by"] == "ana"
    assert "requested (NPT)" in table
    lines = [line for line in table.splitlines() if line.startswith("│")]
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines]
    assert [row[:4] for row in cells] == [
        [str(first), str(merchant.merchant_id), "test", "5.00"],
        [str(second), str(merchant.merchant_id), "live", "12,345.67"],
    ]
    # Right-aligned: the two amounts end in the same column.
    assert lines[0].index("5.00") + 4 == lines[1].index("12,345.67") + 9
    assert cells[0][4] == every[0]["requested_at"][:19].replace("T", " ")
    assert every[0]["requested_at"].endswith("+05:45")
    assert every[2]["decided_at"].endswith("+05:45") and every[1]["decided_at"] is None


async def test_the_listing_tells_the_time_in_nepal(db: Database, db_url: str) -> None:
    merchant = await shop(db)
    # 18:15 UTC on New Year's Day is midnight, the start of the 2nd, in Nepal.
    new_year = int(datetime(2026, 1, 1, 18, 15, tzinfo=UTC).timestamp() * 1000)
    await ask_directly(db, merchant.merchant_id, "test", 1_00, created_ms=new_year)
    mine = ("--merchant", str(merchant.merchant_id))

    [row] = json.loads(await ok(db_url, "credits", "requests", *mine, "--json"))
    table = await ok(db_url, "credits", "requests", *mine)

    assert row["requested_at"] == "2026-01-02T00:00:00+05:45"
    assert "2026-01-02 00:00" in table


@pytest.mark.parametrize("status", ["open", ""])
async def test_the_listing_refuses_an_unknown_status(db_url: str, status: str) -> None:
    done = await bhuktani(db_url, "credits", "requests", "--status", status)
    assert done.returncode == 2, done
