"""SQLite through the stdlib driver on one dedicated thread per process (WAL).

Transactions in a process are serialised by an asyncio lock: SQLite has one writer at a
time anyway, and `BEGIN IMMEDIATE` takes the write lock up front so that two processes
never deadlock upgrading a read lock. A transaction never awaits anything but its own
statements, so the lock is held briefly.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, TypeVar

from bhuktani.store.base import CheckViolation, Row, UniqueViolation

T = TypeVar("T")
_PARAM = re.compile(r"\$(\d+)")
_LOCKS = re.compile(r"\s+FOR UPDATE( SKIP LOCKED)?", re.IGNORECASE)
BUSY_TIMEOUT_MS = 10_000


@lru_cache(maxsize=512)
def translate(sql: str) -> str:
    return _LOCKS.sub("", _PARAM.sub(r"?\1", sql))


def sqlite_path(url: str) -> str:
    assert url.startswith("sqlite:///"), url
    return url.removeprefix("sqlite:///") or ":memory:"


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _raise_typed(exc: sqlite3.IntegrityError) -> None:
    text = str(exc)
    if "UNIQUE" in text:
        raise UniqueViolation(text) from exc
    if "CHECK" in text:
        raise CheckViolation(text) from exc


class SqliteTx:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]:
        def run(conn: sqlite3.Connection) -> list[Row]:
            return list(conn.execute(translate(sql), args).fetchall())

        return await self._db.call(run)

    async def execute(self, sql: str, *args: Any) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(translate(sql), args).rowcount

        return await self._db.call(run)


class SqliteDatabase:
    dialect = "sqlite"

    def __init__(self, url: str) -> None:
        self._path = sqlite_path(url)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._conn is None:
                self._conn = _connect(self._path)
            try:
                return fn(self._conn)
            except sqlite3.IntegrityError as exc:
                _raise_typed(exc)
                raise

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTx]:
        async with self._lock:
            await self.call(lambda conn: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield SqliteTx(self)
            except BaseException:
                await asyncio.shield(self.call(lambda conn: conn.execute("ROLLBACK")))
                raise
            await asyncio.shield(self.call(lambda conn: conn.execute("COMMIT")))

    async def ping(self) -> bool:
        try:
            await self.call(lambda conn: conn.execute("SELECT 1").fetchone())
        except sqlite3.Error:
            return False
        return True

    async def close(self) -> None:
        conn = self._conn

        def shut(_: sqlite3.Connection | None) -> None:
            if conn is not None:
                conn.close()

        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, shut, conn)
            self._conn = None
        self._executor.shutdown(wait=True)
