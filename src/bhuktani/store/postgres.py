"""PostgreSQL through asyncpg: a pool of connections, one transaction per `transaction()`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import asyncpg

from bhuktani import metrics
from bhuktani.infra.gate import FairGate
from bhuktani.store.base import CheckViolation, Row, Tx, UniqueViolation

T = TypeVar("T")
# What a statement on a connection PostgreSQL had closed raises, by when asyncpg reads the
# termination: not PostgresErrors.
DEAD_CONNECTION = (asyncpg.InterfaceError, asyncpg.InternalClientError)
# A kept connection goes back through the pool's checks this often (uses, all connections).
KEPT_RECYCLE_EVERY = 1000


def _rowcount(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Connections go back to the pool as they are: we never change session state, so
    the default reset (four statements, one round trip) buys nothing on every release."""


@contextmanager
def _typed_errors() -> Iterator[None]:
    """The store's own exceptions for violated constraints."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise UniqueViolation(str(exc)) from exc
    except asyncpg.CheckViolationError as exc:
        raise CheckViolation(str(exc)) from exc


class PostgresTx:
    def __init__(self, conn: asyncpg.Connection, memo: dict[Any, Any]) -> None:
        self._conn = conn
        self.memo = memo
        self.created_here: set[Any] = set()

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._conn.fetchrow(sql, *args)
        return row

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]:
        rows: Sequence[Row] = await self._conn.fetch(sql, *args)
        return rows

    async def execute(self, sql: str, *args: Any) -> int:
        status: str = await self._conn.execute(sql, *args)
        return _rowcount(status)


# Generic plans, without parallel workers. Left to choose, PostgreSQL re-plans a read of a
# range of times at every execution (its generic plan's guess for the range looks dear):
# ~0.45 ms of planning for a statement's day that runs in 0.1 ms. A generic plan cannot see
# how few rows the range holds, and once started two parallel workers for a 20-row day
# (9.1 ms against 0.25 ms); without them each statement of ours reads its few rows by an
# index, whatever the parameters. docs/DESIGN.md, "PostgreSQL plans".
SERVER_SETTINGS = {
    "max_parallel_workers_per_gather": "0",
    "plan_cache_mode": "force_generic_plan",
}


class PostgresDatabase:
    dialect = "postgresql"
    whole_transactions = False

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.memo: dict[Any, Any] = {}
        # Connections taken from the pool and kept between statements (_kept_or_pooled).
        self._kept: list[asyncpg.Connection] = []
        self._uses = 0
        # Every statement waits its turn here, not in the pool's own unfair queue (gate.py).
        self._gate = FairGate(pool.get_max_size(), on_wait=metrics.DB_WAIT_SECONDS.observe)

    @classmethod
    async def connect(cls, url: str, *, max_size: int, min_size: int = 2) -> PostgresDatabase:
        pool = await asyncpg.create_pool(
            url,
            min_size=min(min_size, max_size),
            max_size=max_size,
            reset=_keep_session,
            server_settings=SERVER_SETTINGS,
        )
        assert pool is not None
        return cls(pool)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        await self._gate.acquire()
        try:
            async with self._kept_or_pooled() as conn:
                yield conn
        finally:
            self._gate.release()

    @asynccontextmanager
    async def _kept_or_pooled(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection kept from the last statement, else one from the pool. It is kept
        again only when the statement ended cleanly and the connection is open and out of
        any transaction; otherwise, and every KEPT_RECYCLE_EVERY uses, the pool takes it
        back and checks it (its query limit, a cancellation still running, a broken
        link). Through asyncpg's acquire and release for each statement a LIVE commit cost
        about a tenth more server CPU (bench/README.md)."""
        conn = self._kept.pop() if self._kept else await self._pool.acquire()
        clean = False
        try:
            yield conn
            clean = True
        finally:
            self._uses += 1
            recycle = self._uses % KEPT_RECYCLE_EVERY == 0
            if clean and not recycle and not conn.is_closed() and not conn.is_in_transaction():
                self._kept.append(conn)
            else:
                await self._pool.release(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTx]:
        async with self._connection() as conn:
            with _typed_errors():
                async with conn.transaction():
                    yield PostgresTx(conn, self.memo)

    async def once(self, sql: str, *args: Any) -> Row | None:
        async with self._connection() as conn:
            with _typed_errors():
                row: Row | None = await conn.fetchrow(sql, *args)
                return row

    async def run(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        async with self.transaction() as tx:
            return await body(tx)

    async def read(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        async with self._connection() as conn:
            return await body(PostgresTx(conn, self.memo))

    def waiting(self) -> int | None:
        return self._gate.waiting

    async def ping(self) -> bool:
        # Past the gate: a health check does not queue behind every waiting statement; it
        # takes the next connection the pool frees, within its 2 s.
        # A kept connection first (the pool may have none left), handed back to the pool
        # after, where health checks waiting on it take it.
        try:
            conn = self._kept.pop() if self._kept else await self._pool.acquire(timeout=2)
            try:
                await conn.fetchval("SELECT 1")
            finally:
                await self._pool.release(conn)
        except (*DEAD_CONNECTION, OSError, asyncpg.PostgresError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        while self._kept:  # the pool's close waits for every connection to come back
            await self._pool.release(self._kept.pop())
        await self._pool.close()
