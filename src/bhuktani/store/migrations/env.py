from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

from bhuktani.store.schema import metadata

# Two processes migrating the same PostgreSQL at once (several hosts starting together)
# take turns on this lock instead of racing to create the same tables.
MIGRATION_LOCK_KEY = 7_316_214_022


def run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(run)
    await engine.dispose()


def main() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    if "+asyncpg" in url:
        asyncio.run(run_async(url))
        return
    engine = create_engine(url)
    with engine.begin() as conn:
        run(conn)
    engine.dispose()


main()
