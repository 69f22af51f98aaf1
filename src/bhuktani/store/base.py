"""The one interface flows use to reach the database, whichever engine runs it.

SQL is written once, in PostgreSQL's dialect with `$n` parameters; the SQLite engine
rewrites the few spellings that differ (parameters and row locks) once per statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Row = Mapping[str, Any]


class UniqueViolation(Exception):
    """A unique constraint refused the write; the transaction is rolled back."""


class CheckViolation(Exception):
    """A check constraint refused the write; the transaction is rolled back."""


class Tx(Protocol):
    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]: ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; return the number of rows it changed."""
        ...


class Database(Protocol):
    dialect: str

    def transaction(self) -> AbstractAsyncContextManager[Tx]: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
