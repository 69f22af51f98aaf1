"""SQLite through the stdlib driver on one dedicated thread per process (WAL).

A write transaction runs whole on that thread (`SqliteDatabase.run`): its body never
awaits anything but its own statements, so it holds SQLite's one write lock briefly, and
`BEGIN IMMEDIATE` takes that lock up front so that two processes never deadlock upgrading
a read lock. Write transactions queued together share one COMMIT (`_Thread`).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import queue
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, Generic, TypeVar

from bhuktani.store.base import CheckViolation, Row, Tx, UniqueViolation

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


def _typed(exc: sqlite3.IntegrityError) -> Exception:
    """The store's own exception for a violated constraint, else exc itself."""
    text = str(exc)
    typed: Exception
    if "UNIQUE" in text:
        typed = UniqueViolation(text)
    elif "CHECK" in text:
        typed = CheckViolation(text)
    else:
        return exc
    typed.__cause__ = exc
    return typed


class _Ready(Generic[T]):
    """An awaitable computed when awaited, without ever suspending: how a transaction body
    runs whole on the SQLite thread (see SqliteDatabase.run)."""

    __slots__ = ("_compute",)

    def __init__(self, compute: Callable[[], T]) -> None:
        self._compute = compute

    def __await__(self) -> Generator[Any, None, T]:
        return self._compute()
        yield  # a generator that returns at once


class ThreadTx:
    """Statements run right here, on the SQLite thread, inside SqliteDatabase.run."""

    def __init__(
        self, conn: sqlite3.Connection, memo: dict[Any, Any], created: set[Any] | None = None
    ) -> None:
        self._conn = conn
        self.memo = memo
        self.created_here: set[Any] = set() if created is None else created

    def fetchrow(self, sql: str, *args: Any) -> _Ready[Row | None]:
        return _Ready(lambda: self._conn.execute(translate(sql), args).fetchone())

    def fetch(self, sql: str, *args: Any) -> _Ready[Sequence[Row]]:
        return _Ready(lambda: list(self._conn.execute(translate(sql), args).fetchall()))

    def execute(self, sql: str, *args: Any) -> _Ready[int]:
        return _Ready(lambda: self._conn.execute(translate(sql), args).rowcount)


def _drive(awaitable: Awaitable[T]) -> T:
    steps = awaitable.__await__()
    try:
        next(steps)
    except StopIteration as done:
        result: T = done.value
        return result
    close = getattr(steps, "close", None)
    if close is not None:
        close()
    raise RuntimeError("a transaction body awaited something other than its statements")


Outcome = tuple[bool, Any]  # (True, result) or (False, exception)
# At most this many write transactions share one COMMIT.
MAX_GROUP = 64


def _settle(future: asyncio.Future[Any], outcome: Outcome) -> None:
    if future.cancelled():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _settle_all(settled: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for future, outcome in settled:
        _settle(future, outcome)


def _failed(exc: BaseException) -> Outcome:
    return (False, _typed(exc) if isinstance(exc, sqlite3.IntegrityError) else exc)


class _Job:
    """`fn` on the connection; a `grouped` one is a write transaction's body, run by the
    thread inside a transaction it shares with the other bodies queued beside it."""

    __slots__ = ("fn", "future", "grouped")

    def __init__(self, fn: Callable[..., Any], future: asyncio.Future[Any], grouped: bool) -> None:
        self.fn = fn
        self.future = future
        self.grouped = grouped


class _Thread:
    """One connection, used from one dedicated thread only, which takes its jobs from a
    queue and hands results back to the event loop with call_soon_threadsafe
    (run_in_executor would wrap each job in a concurrent future chained to an asyncio
    one: twice the objects and callbacks on every trip to the database).

    Write transactions queued together commit together (group commit): one BEGIN
    IMMEDIATE, each body inside its own SAVEPOINT, so that a body that fails rolls back
    alone, then one COMMIT, after which each caller gets its own outcome. Nobody hears of
    a result before its COMMIT, and a COMMIT that fails fails every body in it. Under load,
    one COMMIT (the WAL write of the hot pages) then serves many payments instead of one.
    A group also takes in the write transactions queued while it runs, up to MAX_GROUP
    bodies (see _join).

    With `writer_lock`, each group first takes an exclusive lock on the file `<db>-writer`,
    so that processes sharing the database wait for each other in the kernel (see
    _run_group)."""

    def __init__(self, path: str, name: str, *, writer_lock: bool = False) -> None:
        self._path = path
        self._name = name
        self._writer_lock = writer_lock
        self._lock_fd: int | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._held: list[_Job | None] = []  # taken from the queue, not yet run
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    def _next(self) -> _Job | None:
        return self._held.pop() if self._held else self._jobs.get()

    def _serve(self) -> None:
        while (job := self._next()) is not None:  # None: close() asked to stop
            if job.future.cancelled():  # its caller is gone before it began: skip it
                continue
            if not job.grouped:
                outcome = self._run(job.fn)
                job.future.get_loop().call_soon_threadsafe(_settle, job.future, outcome)
                continue
            group = [job]
            outcomes = self._run_group(group)
            settled = [(j.future, outcome) for j, outcome in zip(group, outcomes, strict=True)]
            group[0].future.get_loop().call_soon_threadsafe(_settle_all, settled)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _join(self, group: list[_Job]) -> None:
        """Add to the group the write transactions queued meanwhile, up to MAX_GROUP. Any
        other job (or close's None) ends the group: its turn comes after it."""
        while len(group) < MAX_GROUP and not self._held:
            try:
                queued = self._jobs.get_nowait()
            except queue.Empty:
                return
            if queued is None or not queued.grouped:
                self._held.append(queued)
            elif not queued.future.cancelled():
                group.append(queued)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _connect(self._path)
        return self._conn

    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Outcome:
        try:
            return (True, fn(self._connection()))
        except BaseException as exc:
            return _failed(exc)

    def _run_group(self, group: list[_Job]) -> list[Outcome]:
        if not self._writer_lock:
            return self._group_transaction(group)
        # Processes that share the file queue for its write lock on a file lock of their
        # own: the kernel wakes the next one the moment it is free. SQLite's own waiting
        # (busy_timeout) sleeps 1, 2, 5 ... 100 ms between tries, so that with two busy
        # processes one of them could wait a second while the other wrote many times.
        lock_fd = self._writer_lock_fd()
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            return self._group_transaction(group)
        finally:
            fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def _writer_lock_fd(self) -> int:
        if self._lock_fd is None:
            self._lock_fd = os.open(f"{self._path}-writer", os.O_RDWR | os.O_CREAT, 0o600)
        return self._lock_fd

    def _group_transaction(self, group: list[_Job]) -> list[Outcome]:
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            return [_failed(exc)] * len(group)
        # Rows created by any body of the group are not committed until the group is: no
        # body may remember their ids (see ledger), so they share one record of them.
        created: set[Any] = set()
        outcomes: list[Outcome] = []
        try:
            # The group takes in the transactions queued while it runs, not only those
            # queued before it began: the event loop answers the previous group while
            # this one waits for BEGIN, and their next steps join here rather than
            # wait for a COMMIT of their own.
            self._join(group)
            while len(outcomes) < len(group):
                job = group[len(outcomes)]
                conn.execute("SAVEPOINT body")
                try:
                    outcomes.append((True, job.fn(conn, created)))
                except BaseException as exc:
                    if not conn.in_transaction:
                        raise  # SQLite gave up the whole transaction: nothing of it stays
                    conn.execute("ROLLBACK TO body")
                    outcomes.append(_failed(exc))
                conn.execute("RELEASE body")
                self._join(group)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [_failed(exc)] * len(group)
        return outcomes

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` alone on the connection."""
        return await self._queue(fn, grouped=False)

    async def transact(self, body: Callable[[sqlite3.Connection, set[Any]], T]) -> T:
        """`body` inside a write transaction, maybe shared with others (see the class)."""
        return await self._queue(body, grouped=True)

    async def _queue(self, fn: Callable[..., T], grouped: bool) -> T:
        if self._thread is None:
            # A daemon: a process that exits without close() must not hang on it, and
            # SQLite's journal drops a transaction cut short.
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put(_Job(fn, future, grouped))
        return await future

    async def close(self) -> None:
        if self._thread is None:
            return
        self._jobs.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._thread = None


class SqliteTx:
    """A transaction whose statements each hop to the side thread (tests)."""

    def __init__(self, thread: _Thread, memo: dict[Any, Any]) -> None:
        self._thread = thread
        self.memo = memo
        self.created_here: set[Any] = set()

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]:
        def run(conn: sqlite3.Connection) -> list[Row]:
            return list(conn.execute(translate(sql), args).fetchall())

        return await self._thread.call(run)

    async def execute(self, sql: str, *args: Any) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(translate(sql), args).rowcount

        return await self._thread.call(run)


class SqliteDatabase:
    """`run` executes whole transactions one after another on the main thread, so it needs
    no lock: the thread is the queue. `transaction` (statement by statement, for tests
    that need to hold one open; the product's own paths all use `run` and `read`) uses a
    second connection on its own thread; SQLite's write lock, waited for by busy_timeout,
    keeps the two apart."""

    dialect = "sqlite"
    whole_transactions = True

    def __init__(self, url: str) -> None:
        path = sqlite_path(url)
        assert path != ":memory:", "two connections must see one database: use a file"
        # Only the main thread's write transactions take the writer lock: they hold it for
        # one group and wait on nothing else meanwhile. The side connection's transactions
        # span awaits, and wait for SQLite's own lock, with its timeout.
        self._main = _Thread(path, "sqlite-main", writer_lock=True)
        self._side = _Thread(path, "sqlite-side")
        self._side_lock = asyncio.Lock()
        self.memo: dict[Any, Any] = {}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTx]:
        async with self._side_lock:
            await self._side.call(lambda conn: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield SqliteTx(self._side, self.memo)
            except BaseException:
                await asyncio.shield(self._side.call(lambda conn: conn.execute("ROLLBACK")))
                raise
            await asyncio.shield(self._side.call(lambda conn: conn.execute("COMMIT")))

    async def run(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        """The whole transaction in one call to the SQLite thread, committed with the
        others queued beside it (see _Thread)."""

        def whole(conn: sqlite3.Connection, created: set[Any]) -> T:
            return _drive(body(ThreadTx(conn, self.memo, created)))

        return await self._main.transact(whole)

    async def once(self, sql: str, *args: Any) -> Row | None:
        return await self.run(lambda tx: tx.fetchrow(sql, *args))

    async def read(self, body: Callable[[Tx], Awaitable[T]]) -> T:
        # A deferred transaction takes no write lock: other processes keep writing.
        return await self._whole(body, "BEGIN")

    async def _whole(self, body: Callable[[Tx], Awaitable[T]], begin: str) -> T:
        def whole(conn: sqlite3.Connection) -> T:
            conn.execute(begin)
            try:
                result: T = _drive(body(ThreadTx(conn, self.memo)))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._main.call(whole)

    def waiting(self) -> int | None:
        return None

    async def ping(self) -> bool:
        try:
            await self._main.call(lambda conn: conn.execute("SELECT 1").fetchone())
        except sqlite3.Error:
            return False
        return True

    async def close(self) -> None:
        await self._main.close()
        await self._side.close()
