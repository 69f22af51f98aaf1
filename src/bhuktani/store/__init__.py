from __future__ import annotations

from typing import Any

from bhuktani.store.base import POOL_SIZE, CheckViolation, Database, Row, Tx, UniqueViolation

__all__ = [
    "CheckViolation",
    "Database",
    "Row",
    "Tx",
    "UniqueViolation",
    "connect",
    "query_row",
]


async def query_row(db: Database, sql: str, *args: Any) -> Row | None:
    """One reading statement on its own."""
    return await db.read(lambda tx: tx.fetchrow(sql, *args))


async def connect(url: str, *, pool_size: int = POOL_SIZE) -> Database:
    """The database at `url`; on PostgreSQL, a pool of up to `pool_size` connections."""
    if url.startswith("sqlite:///"):
        from bhuktani.store.sqlite import SqliteDatabase

        return SqliteDatabase(url)
    if url.startswith(("postgresql://", "postgres://")):
        from bhuktani.store.postgres import PostgresDatabase

        return await PostgresDatabase.connect(url, max_size=pool_size)
    raise ValueError("database URL must start with sqlite:/// or postgresql://")
