"""The one interface flows use to reach the database, whichever engine runs it.

SQL is written once, in PostgreSQL's dialect with `$n` parameters; the SQLite engine
rewrites the few spellings that differ (parameters and row locks) once per statement.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

Row = Mapping[str, Any]

# PostgreSQL connections per process unless told otherwise (BHUKTANI_DB_POOL_SIZE). Each
# waits on the same few hot rows and the same cores: on 2 cores 5 made more commits a
# second than 10, with a quarter less backend CPU a commit (bench/README.md).
POOL_SIZE = 5


class UniqueViolation(Exception):
    """A unique constraint refused the write; the transaction is rolled back."""


class CheckViolation(Exception):
    """A check constraint refused the write; the transaction is rolled back."""


T = TypeVar("T")


class Tx(Protocol):
    # Facts that never change once committed (account ids), remembered per Database;
    # and what this transaction created, which is not a fact until it commits.
    memo: dict[Any, Any]
    created_here: set[Any]

    def fetchrow(self, sql: str, *args: Any) -> Awaitable[Row | None]: ...

    def fetch(self, sql: str, *args: Any) -> Awaitable[Sequence[Row]]: ...

    def execute(self, sql: str, *args: Any) -> Awaitable[int]:
        """Run a statement; the awaitable gives the number of rows it changed."""
        ...


class Database(Protocol):
    dialect: str
    # Whether a transaction's statements run whole in one call, with no round trip between
    # them (SQLite, on its thread): then joining two steps into one transaction is cheaper
    # than two statements each committed alone (PostgreSQL: four round trips against two).
    whole_transactions: bool
    # Facts that never change once committed (see Tx.memo), shared by its transactions.
    memo: dict[Any, Any]

    def transaction(self) -> AbstractAsyncContextManager[Tx]: ...

    async def run(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        """Run body in one transaction. The body awaits nothing but its own statements,
        so an engine may run it whole in one call (SQLite: on its thread)."""
        ...

    async def read(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        """Run a body that only reads: no write lock (SQLite), no BEGIN/COMMIT round trips
        (PostgreSQL: each statement commits alone, so a body of several reads may see
        commits between them; use run() where one snapshot matters)."""
        ...

    async def once(self, sql: str, *args: Any) -> Row | None:
        """One writing statement in a transaction of its own, and the first row it returns.
        On PostgreSQL it commits by itself: no BEGIN or COMMIT round trips."""
        ...

    async def ping(self) -> bool: ...

    def waiting(self) -> int | None:
        """Statements waiting for a connection now (PostgreSQL); None where statements do
        not queue for connections (SQLite: one thread runs them in turn)."""
        ...

    async def close(self) -> None: ...
