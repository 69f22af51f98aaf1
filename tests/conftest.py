"""Every test that takes `db_url` runs on SQLite and on PostgreSQL.

PostgreSQL is the server named by BHUKTANI_TEST_POSTGRES_URL; each test session gets a
database of its own there. When PostgreSQL is asked for and unreachable the run fails:
it never skips silently. BHUKTANI_TEST_DATABASES=sqlite runs SQLite alone, by choice.

Tests of PostgreSQL alone (`only_postgresql`) take `empty_pg_url`: a database of their
own, migrated and empty.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from bhuktani.api.app import create_app
from bhuktani.merchants.service import NewMerchant
from bhuktani.runtime import Gateway
from bhuktani.store import Database, connect
from bhuktani.store.migrate import upgrade
from tests.support import Server, fast_settings, new_merchant, running_server

PG_ENV = "BHUKTANI_TEST_POSTGRES_URL"
DATABASES = [
    d.strip() for d in os.environ.get("BHUKTANI_TEST_DATABASES", "sqlite,postgresql").split(",")
]


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def _migrated_pg_database(prefix: str) -> Iterator[str]:
    """A PostgreSQL database created for the caller, migrated, dropped after it."""
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.fail(
            f"{PG_ENV} is not set; PostgreSQL tests never skip (set BHUKTANI_TEST_DATABASES=sqlite to run SQLite only)"
        )
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {PG_ENV} is unreachable: {exc}")
    try:
        url = _with_database(admin_url, name)
        upgrade(url)
        yield url
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session", params=DATABASES)
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/bhuktani.db"
        upgrade(url)
        yield url
        return
    with _migrated_pg_database("bhuktani_test") as url:
        yield url


only_postgresql = pytest.mark.skipif(
    "postgresql" not in DATABASES, reason="BHUKTANI_TEST_DATABASES leaves PostgreSQL out"
)


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A PostgreSQL database of the test's own, migrated and empty (alembic runs its own
    event loop, so this fixture is not async)."""
    with _migrated_pg_database("bhuktani_alone") as url:
        yield url


@pytest.fixture
def own_db_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own on db_url's engine, migrated and empty: for a test
    that reads every row of a kind (a day's payments of an ISP, say) as its own."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path}/own.db"
        upgrade(url)
        yield url
        return
    with _migrated_pg_database("bhuktani_own") as url:
        yield url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await connect(db_url)
    yield database
    await database.close()


class AppClient(httpx.AsyncClient):
    gateway: Gateway


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[AppClient]:
    """The app in this process, with its lifespan (reconciler included)."""
    app = create_app(fast_settings(db_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AppClient(transport=transport, base_url="http://gateway") as http:
            http.gateway = app.state.gateway
            yield http


@pytest.fixture
async def merchant(client: AppClient) -> NewMerchant:
    return await new_merchant(client.gateway.db)


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    """`bhuktani serve` in another process, over real connections."""
    with running_server(db_url, tmp_path / "server.log") as running:
        yield running
