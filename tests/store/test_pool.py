"""The PostgreSQL pool is the operator's to size (BHUKTANI_DB_POOL_SIZE): on a small
machine fewer connections made more commits a second, on a bigger one more may."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from prometheus_client.metrics_core import Metric

from bhuktani.api.app import create_app
from bhuktani.store.postgres import DEAD_CONNECTION, PostgresDatabase
from tests.conftest import only_postgresql
from tests.support import METRICS_AUTH, fast_settings

pytestmark = only_postgresql
# No background statements: the reconciler, the callback worker and the queue gauges off.
QUIET = {"reconciler_enabled": False, "callbacks_enabled": False, "queue_gauges_every_s": 0}


@pytest.mark.parametrize("size", [1, 3])
async def test_the_app_opens_no_more_postgresql_connections_than_its_setting(
    empty_pg_url: str, size: int
) -> None:
    app = create_app(fast_settings(empty_pg_url, db_pool_size=size))
    async with app.router.lifespan_context(app):
        db = app.state.gateway.db
        # More statements at once than connections: they wait for one, none opens more.
        await asyncio.gather(*(db.once("SELECT pg_sleep(0.05)") for _ in range(size * 3)))
        # Counted by PostgreSQL: the app's connections to this database, idle ones too.
        watcher = await asyncpg.connect(empty_pg_url)
        try:
            opened = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await watcher.close()
    assert opened == size


def test_a_pool_of_no_connections_is_refused() -> None:
    with pytest.raises(ValueError, match="db_pool_size"):
        fast_settings("sqlite:///unused.db", db_pool_size=0)


async def test_metrics_tell_how_long_statements_waited_for_a_connection(
    empty_pg_url: str,
) -> None:
    """What an operator reads when commits slow down and PostgreSQL is idle: the pool is
    the queue."""
    from bhuktani import metrics

    app = create_app(fast_settings(empty_pg_url, db_pool_size=1, **QUIET))
    before = next(iter(metrics.DB_WAIT_SECONDS.collect()))
    count_before = _sample(before, "bhuktani_db_connection_wait_seconds_count")
    async with app.router.lifespan_context(app):
        db = app.state.gateway.db
        running = [asyncio.create_task(db.once("SELECT pg_sleep(0.1)")) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert db.waiting() == 2
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            scraped = (await http.get("/metrics", headers=METRICS_AUTH)).text
        await asyncio.gather(*running)
        assert db.waiting() == 0
    after = next(iter(metrics.DB_WAIT_SECONDS.collect()))

    assert "bhuktani_db_statements_waiting 2.0" in scraped
    assert _sample(after, "bhuktani_db_connection_wait_seconds_count") == count_before + 2
    assert _sample(after, "bhuktani_db_connection_wait_seconds_sum") >= 0.1 + 0.2 - 0.05


async def _terminate_kept_connection(db: PostgresDatabase, pg_url: str) -> int:
    """Run a statement, so its connection is kept, and have PostgreSQL terminate that
    connection's backend from another one; the backend's pid."""
    row = await db.once("SELECT pg_backend_pid() AS pid")
    assert row is not None
    watcher = await asyncpg.connect(pg_url)
    try:
        await watcher.execute("SELECT pg_terminate_backend($1)", row["pid"])
    finally:
        await watcher.close()
    return int(row["pid"])


def _sample(family: Metric, name: str) -> float:
    return next(s.value for s in family.samples if s.name == name)


async def test_the_health_check_answers_while_the_only_connection_is_kept(
    empty_pg_url: str,
) -> None:
    """A statement keeps its connection for the next one, out of the pool: a health check
    that asked the pool alone would wait 2 s and call the database down."""
    app = create_app(fast_settings(empty_pg_url, db_pool_size=1, **QUIET))
    async with app.router.lifespan_context(app):
        db = app.state.gateway.db
        await db.once("SELECT 1")
        assert await asyncio.wait_for(db.ping(), 1.0) is True
        assert await db.once("SELECT 2 AS two") is not None


async def test_a_connection_postgresql_closed_is_not_kept(empty_pg_url: str) -> None:
    app = create_app(fast_settings(empty_pg_url, db_pool_size=1, **QUIET))
    async with app.router.lifespan_context(app):
        db = app.state.gateway.db
        killed = await _terminate_kept_connection(db, empty_pg_url)
        # The statement on the dead connection fails, as it would through the pool alone
        # (how depends on when the termination is read); the next one gets a new connection.
        with pytest.raises((*DEAD_CONNECTION, asyncpg.PostgresError, OSError)):
            await db.once("SELECT 1")
        again = await db.once("SELECT pg_backend_pid() AS pid")
        assert again is not None and again["pid"] != killed


async def test_the_health_check_on_a_connection_postgresql_closed_says_so(
    empty_pg_url: str,
) -> None:
    """Not a crash of /healthz: false once, and true again on a new connection."""
    app = create_app(fast_settings(empty_pg_url, db_pool_size=1, **QUIET))
    async with app.router.lifespan_context(app):
        db = app.state.gateway.db
        await _terminate_kept_connection(db, empty_pg_url)
        assert await db.ping() is False
        assert await db.ping() is True


async def test_health_checks_at_once_share_the_only_connection_when_it_was_kept(
    empty_pg_url: str,
) -> None:
    """The first check takes the kept connection; the others wait on the pool, so the
    first must hand it to the pool, not keep it, or they wait their 2 s and say down."""
    app = create_app(fast_settings(empty_pg_url, db_pool_size=1, **QUIET))
    async with app.router.lifespan_context(app):
        db = app.state.gateway.db
        await db.once("SELECT 1")
        answers = await asyncio.wait_for(asyncio.gather(*(db.ping() for _ in range(10))), 1.5)
        assert answers == [True] * 10
        assert await db.once("SELECT 2 AS two") is not None
