"""GET /api/transactions/: a merchant's payments newest first, every filter, a keyset
cursor that walks without a duplicate or a gap while payments arrive, refusals naming the
field; and the plans that keep a page's cost its own (no sort, no OFFSET)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from bhuktani.books import statements
from bhuktani.books.transactions import Filters, page_query
from bhuktani.domain import State
from bhuktani.store import Database
from tests.books.test_statements import Clock, Ledger, at
from tests.conftest import only_postgresql
from tests.support import Server, new_merchant

TRANSACTIONS = "/api/transactions/"
RESULT_FIELDS = {
    "status",
    "state",
    "original_status",
    "details",
    "reference",
    "response_id",
    "amount",
    "refunded",
    "refunded_amount",
    "refunds",
    "service",
    "isp",
    "created_at",
    "charge",
}
QUEUED_SERVICE = "virtual-network"  # a single-step service: Processing shows as Queued
HASHCNET_ISP = "airson-internet"  # an ISP of the hashcnet-v2 group


async def listed(http: httpx.AsyncClient, token: str, **params: Any) -> dict[str, Any]:
    answer = await http.get(TRANSACTIONS, params={"token": token, **params})
    assert answer.status_code == 200, (params, answer.text)
    body: dict[str, Any] = answer.json()
    assert set(body) == {"status", "results", "next_cursor"}
    assert body["status"] is True
    return body


async def references(http: httpx.AsyncClient, token: str, **params: Any) -> list[str]:
    return [r["reference"] for r in (await listed(http, token, **params))["results"]]


async def test_every_filter_over_http(db: Database, server: Server) -> None:
    created = await new_merchant(db, test_rupees=0)
    clock = Clock(0)
    books = Ledger(db, created.merchant_id, clock)
    today = statements.today()
    d0, d1, d2 = today - timedelta(days=3), today - timedelta(days=2), today - timedelta(days=1)
    await books.at(at(d0, 1)).load(10_000_00)
    p1, _ = await books.at(at(d0, 10)).hold(100_00, reference="inv-001")
    await books.at(at(d0, 10, 1)).finish(p1, State.SUCCESS, charged=False)
    await books.at(at(d0, 11)).refund("inv-001", 25_00, "partly reversed")
    p2, _ = await books.at(at(d1, 0)).hold(
        200_00, reference="inv-002", service="hashcnet-v2", isp=HASHCNET_ISP
    )
    await books.at(at(d1, 0, 1)).finish(p2, State.FAILED, charged=False)
    await books.at(at(d1, 23, 59)).hold(300_00, reference="bill-003")
    await books.at(at(d2, 0)).hold(
        400_00, reference="inv-004", service=QUEUED_SERVICE, isp=QUEUED_SERVICE
    )
    p5, _ = await books.at(at(d2, 12)).hold(500_00, 5_00, reference="Inv-005")
    await books.at(at(d2, 12, 1)).finish(p5, State.SUCCESS, charged=True)
    token = created.test_token
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        everything = await listed(http, token)
        assert [r["reference"] for r in everything["results"]] == [
            "Inv-005",
            "inv-004",
            "bill-003",
            "inv-002",
            "inv-001",
        ]
        assert everything["next_cursor"] is None
        first, queued, processing, failed, refunded = everything["results"]
        for result in everything["results"]:
            assert set(result) == RESULT_FIELDS
            assert isinstance(result["response_id"], int)
            assert isinstance(result["amount"], float) and isinstance(result["charge"], float)
        assert (first["state"], first["amount"], first["charge"]) == ("Success", 500.0, 5.0)
        assert first["service"] == "arrownet" and first["isp"] == "arrownet"
        assert first["created_at"] == f"{d2.isoformat()}T12:00:00.000+05:45"
        assert (queued["state"], queued["service"]) == ("Queued", QUEUED_SERVICE)
        assert processing["state"] == "Processing" and processing["charge"] == 0.0
        assert (failed["state"], failed["isp"]) == ("Failed", HASHCNET_ISP)
        assert refunded["refunded"] is True and refunded["refunded_amount"] == 25.0
        assert refunded["refunds"] == [
            {"created_at": d0.isoformat(), "remarks": "partly reversed", "amount": 25.0}
        ]
        # The status look-up shows each the same (the list adds service, isp, created_at,
        # charge).
        status = await http.get(
            "/api/service/status/", params={"token": token, "reference": "inv-001"}
        )
        assert {k: refunded[k] for k in status.json()} == status.json()

        # Dates: Nepal days, inclusive.
        day = d1.isoformat()
        assert await references(http, token, **{"from": day, "to": day}) == ["bill-003", "inv-002"]
        assert await references(http, token, **{"from": d2.isoformat()}) == ["Inv-005", "inv-004"]
        assert await references(http, token, to=d0.isoformat()) == ["inv-001"]
        # States as the status look-up shows them.
        assert await references(http, token, state="Queued") == ["inv-004"]
        assert await references(http, token, state="Processing") == ["bill-003"]
        assert await references(http, token, state="Success") == ["Inv-005", "inv-001"]
        assert await references(http, token, state="Failed") == ["inv-002"]
        # A group's slug or one ISP's.
        assert await references(http, token, service="arrownet") == [
            "Inv-005",
            "bill-003",
            "inv-001",
        ]
        assert await references(http, token, service="hashcnet-v2") == ["inv-002"]
        assert await references(http, token, service=HASHCNET_ISP) == ["inv-002"]
        # A reference's start, case and all; _ and % are plain characters.
        assert await references(http, token, reference="inv-") == ["inv-004", "inv-002", "inv-001"]
        assert await references(http, token, reference="Inv") == ["Inv-005"]
        assert await references(http, token, reference="inv_") == []
        assert await references(http, token, reference="%") == []
        # Filters together.
        assert await references(
            http, token, reference="inv", state="Success", **{"from": d0.isoformat()}
        ) == ["inv-001"]
        # Another merchant's list and the other environment's are apart.
        other = await new_merchant(db)
        assert await references(http, other.test_token) == []
        assert await references(http, created.live_token) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "12-07-2026"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-07-12", "to": "2026-07-11"}, "to"),
        ({"state": "Done"}, "state"),
        ({"state": "success"}, "state"),
        ({"service": "no-such-isp"}, "service"),
        ({"reference": "x" * 51}, "reference"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "MTIzOmFiYw"}, "cursor"),  # "123:abc"
    ],
)
async def test_a_bad_filter_is_1010_naming_it(
    client: httpx.AsyncClient, db: Database, params: dict[str, str], field: str
) -> None:
    created = await new_merchant(db)
    answer = await client.get(TRANSACTIONS, params={"token": created.test_token, **params})
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error_code"] == "1010"
    assert list(body["error_data"]) == [field]


async def test_limit_bounds_and_the_cursor_walk_while_payments_arrive(
    db: Database, server: Server
) -> None:
    created = await new_merchant(db, test_rupees=0)
    clock = Clock(0)
    books = Ledger(db, created.merchant_id, clock)
    start = at(statements.today() - timedelta(days=1), 1)
    await books.at(start).load(1_000_000_00)
    made: list[tuple[int, int, str]] = []
    for n in range(23):
        # Three payments to an instant, so the id breaks ties within it.
        created_ms = start + 1000 + (n // 3) * 60_000
        payment_id, reference = await books.at(created_ms).hold(1_00 + n, reference=f"walk-{n:02d}")
        made.append((created_ms, payment_id, reference))
    expected = [reference for _, _, reference in sorted(made, reverse=True)]
    token = created.test_token
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        one = await listed(http, token, limit="1")
        assert len(one["results"]) == 1 and isinstance(one["next_cursor"], str)
        assert len((await listed(http, token, limit=500))["results"]) == 23
        assert (await listed(http, token, limit=23))["next_cursor"] is None
        seen: list[str] = []
        cursor: str | None = None
        for page_number in range(10):
            params: dict[str, Any] = {"limit": 5}
            if cursor is not None:
                params["cursor"] = cursor
            page = await listed(http, token, **params)
            assert len(page["results"]) <= 5
            seen += [r["reference"] for r in page["results"]]
            cursor = page["next_cursor"]
            # New payments arrive between pages: newer than any cursor, never in the walk.
            await books.at(statements.now_ms() + page_number).hold(
                1_00, reference=f"new-{page_number}"
            )
            if cursor is None:
                break
    assert seen == expected
    assert len(set(seen)) == len(seen)


PLANNED = {
    "unfiltered": Filters(),
    "next page": Filters(after=(1_720_000_000_000, 42)),
    "dates": Filters(from_day=date(2026, 7, 1), to_day=date(2026, 7, 12)),
    "dates, next page": Filters(
        from_day=date(2026, 7, 1), to_day=date(2026, 7, 12), after=(1_720_000_000_000, 42)
    ),
}


async def generic_plan(conn: asyncpg.Connection, sql: str) -> str:
    """The plan PostgreSQL keeps for a prepared statement, made on empty tables."""
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    await conn.execute(f"PREPARE listed AS {sql}")
    try:
        count = max(int(n) for n in re.findall(r"\$(\d+)", sql))
        rows = await conn.fetch(f"EXPLAIN EXECUTE listed({', '.join(['NULL'] * count)})")
    finally:
        await conn.execute("DEALLOCATE listed")
    return "\n".join(str(row[0]) for row in rows)


@only_postgresql
@pytest.mark.parametrize("name", sorted(PLANNED))
async def test_a_page_walks_the_merchant_time_index_without_sorting(
    empty_pg_url: str, name: str
) -> None:
    sql, _ = page_query(1, "test", PLANNED[name])
    conn = await asyncpg.connect(empty_pg_url)
    try:
        plan = await generic_plan(conn, sql)
    finally:
        await conn.close()
    print(f"\n{name}:\n{plan}")
    assert "Index Scan Backward using payments_merchant_time" in plan, plan
    assert "Sort" not in plan, plan
    assert "Seq Scan" not in plan, plan
    assert "OFFSET" not in sql.upper()


@pytest.mark.parametrize("name", sorted(PLANNED))
async def test_a_page_is_read_by_the_index_on_sqlite_too(db: Database, name: str) -> None:
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL's plan: test_a_page_walks_the_merchant_time_index_without_sorting")
    sql, args = page_query(1, "test", PLANNED[name])
    rows = await db.read(lambda tx: tx.fetch(f"EXPLAIN QUERY PLAN {sql}", *args))
    plan = "\n".join(str(row["detail"]) for row in rows)
    assert "payments_merchant_time" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
