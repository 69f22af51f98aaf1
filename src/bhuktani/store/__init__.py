from __future__ import annotations

from bhuktani.store.base import CheckViolation, Database, Row, Tx, UniqueViolation

__all__ = ["CheckViolation", "Database", "Row", "Tx", "UniqueViolation", "connect"]


async def connect(url: str) -> Database:
    if url.startswith("sqlite:///"):
        from bhuktani.store.sqlite import SqliteDatabase

        return SqliteDatabase(url)
    if url.startswith(("postgresql://", "postgres://")):
        from bhuktani.store.postgres import PostgresDatabase

        return await PostgresDatabase.connect(url)
    raise ValueError("database URL must start with sqlite:/// or postgresql://")
