"""PostgreSQL keeps a prepared statement's generic plan for as long as the connection lives,
and makes it while the tables may still be empty (a new deployment, the bench). The
statements of every commit must then reach their rows by primary or unique key: a plan
that scans a table, or walks an index of many rows for the one it wants, grows slower with
every payment until the connections are renewed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bhuktani.ledger import book, postgres
from bhuktani.sandbox import inprocess
from tests.conftest import only_postgresql

pytestmark = only_postgresql

STATEMENTS = {
    "hold": postgres.HOLD,
    "hold, charged": postgres.HOLD_CHARGED,
    "settle, post": postgres.SETTLE_POST,
    "settle, post charged": postgres.SETTLE_POST_CHARGED,
    "settle, void": postgres.SETTLE_VOID,
    "sandbox pay": inprocess._APPLY_IN_ONE_STATEMENT,
    "settle, not final": (
        "UPDATE payments SET isp_status = $2, updated_ms = $3"
        f" WHERE {book.BY_ID_STILL_PROCESSING} RETURNING id"
    ),
}


@pytest.fixture
async def empty_db(empty_pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(empty_pg_url)
    try:
        yield conn
    finally:
        await conn.close()


async def generic_plan(conn: asyncpg.Connection, sql: str) -> str:
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    await conn.execute(f"PREPARE checked AS {sql}")
    try:
        count = max(int(n) for n in re.findall(r"\$(\d+)", sql))
        rows = await conn.fetch(f"EXPLAIN EXECUTE checked({', '.join(['NULL'] * count)})")
    finally:
        await conn.execute("DEALLOCATE checked")
    return "\n".join(str(row[0]) for row in rows)


@pytest.mark.parametrize("name", sorted(STATEMENTS))
async def test_a_commit_statement_planned_on_empty_tables_finds_rows_by_key(
    empty_db: asyncpg.Connection, name: str
) -> None:
    plan = await generic_plan(empty_db, STATEMENTS[name])

    assert "Seq Scan" not in plan, plan
    assert "payments_due" not in plan, plan
