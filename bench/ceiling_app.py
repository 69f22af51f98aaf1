"""The ceiling: the least a server can do for the two measured calls, on the same stack.

Plain Starlette on the same uvicorn settings as `bhuktani serve` (uvloop, httptools, no
access log, same --workers, same garbage collector settings), the raw drivers (asyncpg;
stdlib sqlite3 on one dedicated thread per process, WAL, write transactions queued
together committed together as the product's store does), no authentication, no
validation, no logging. It does only the database work the measured call cannot avoid
(docs/DESIGN.md), on tables of the same shape:

- details (HashCNet V2): insert one session row (the offer as JSON, ~1.1 KB, as the
  product stores it), answer the documented ~1.8 KB body with the new session_id;
- commit (Arrownet): the hold transaction (claim the reference with a unique insert into
  payments, insert the pending transfer, hold the merchant's credits with a conditional
  update), then the post transaction (insert the post transfer, mark the payment Success,
  credit one of the 16 shards of the ISP's payable, debit the merchant). The balance rows
  come last in each, the merchant's hot row very last, so their row locks are held for the
  shortest time, as the product does since its commit 18a6681. On PostgreSQL each
  transaction is one statement (data-modifying CTEs), as the product's: its row locks last
  no longer than the statement, with no round trip inside. With CEILING_ISP_URL set
  (the slow-ISP scenario) it also makes the ISP calls of a LIVE commit, the subscriber
  look-up before the hold (kept 30 s, as the product keeps it) and the payment between the
  two transactions, with a minimal HTTP/1.1 client (keep-alive, no cap on connections;
  CEILING_ISP_CLIENT=aiohttp for aiohttp, the product's client before its own).

The token only picks the merchant's account (a dict loaded at start); nothing is checked.

    python bench/ceiling_app.py init  TOKEN...   # tables + accounts, CEILING_DATABASE_URL
    python bench/ceiling_app.py serve --port P --workers N
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import gc
import os
import queue
import secrets
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

T = TypeVar("T")
ID_LIMIT = 2**53
BIG_BALANCE_PAISA = 10**12 * 100
# The ISP's payable is spread over shards picked by payment id, as the product does
# (src/bhuktani/ledger), so that posts of different merchants do not queue on one row.
ISP_SHARDS = 16


def isp_code(shard: int) -> str:
    return f"isp:arrownet/{shard}"


# The product's session offer for jeetenaug4 (subscriber_to_json), byte for byte in size.
OFFER_JSON = (
    '{"username":"jeetenaug4","customer_id":"23123213","full_name":"jeetenaug4",'
    '"current_plan":"Fiber Gold","days_remaining":314,"has_due":false,'
    '"accept_advance_payment":true,"packages":[{"title":"Fiber Gold","code":9,"durations":['
    '{"code":"1","title":"1 Month","amount_paisa":123200,"days":30},'
    '{"code":"3","title":"3 Months","amount_paisa":787600,"days":90},'
    '{"code":"6","title":"6 Months","amount_paisa":1575000,"days":180},'
    '{"code":"12","title":"12 Months","amount_paisa":1575000,"days":360},'
    '{"code":"custom_2","title":"15 Days","amount_paisa":163400,"days":15},'
    '{"code":"custom_3","title":"60 Days","amount_paisa":85900,"days":60}]},'
    '{"title":"FTTH-50Mbps","code":9,"durations":['
    '{"code":"1","title":"1 Month","amount_paisa":99900,"days":30},'
    '{"code":"3","title":"3 Months","amount_paisa":280000,"days":90},'
    '{"code":"6","title":"6 Months","amount_paisa":530000,"days":180},'
    '{"code":"12","title":"12 Months","amount_paisa":999900,"days":360},'
    '{"code":"custom_1","title":"12M + 1 IPTV","amount_paisa":1350000,"days":360}]},'
    '{"title":"TESTING","code":71,"durations":['
    '{"code":"1","title":"1 Month","amount_paisa":200,"days":30}]}]}'
)

# The documented details answer (docs/API.md 3.1), session_id appended at the end.
DETAILS_HEAD = (
    b'{"customer_name":"jeetenaug4(23123213)","current_plan":"Fiber Gold",'
    b'"accept_advance_payment":true,"days_remaining":314,"has_due":"false","plan_detail":['
    b'{"duration":"1 month(s)","duration_title":"1 month","total_cost":1232.0,"duration_code":"1"},'
    b'{"duration":"3 month(s)","duration_title":"3 months","total_cost":7876.0,"duration_code":"3"},'
    b'{"duration":"6 month(s)","duration_title":"6 months","total_cost":15750.0,"duration_code":"6"},'
    b'{"duration":"12 month(s)","duration_title":"12 months","total_cost":15750.0,"duration_code":"12"},'
    b'{"duration":"custom_2 month(s)","duration_title":"15 Days","total_cost":1634.0,'
    b'"duration_code":"custom_2"},'
    b'{"duration":"custom_3 month(s)","duration_title":"60 Days","total_cost":859.0,'
    b'"duration_code":"custom_3"}],"available_packages":[{"title":"Fiber Gold","package_code":9,'
    b'"duration":[{"total_cost":1232,"duration_code":"1","duration_title":"1 Month"},'
    b'{"total_cost":7876,"duration_code":"3","duration_title":"3 Months"},'
    b'{"total_cost":15750,"duration_code":"6","duration_title":"6 Months"},'
    b'{"total_cost":15750,"duration_code":"12","duration_title":"12 Months"},'
    b'{"total_cost":1634,"duration_code":"custom_2","duration_title":"15 Days"},'
    b'{"total_cost":859,"duration_code":"custom_3","duration_title":"60 Days"}]},'
    b'{"title":"FTTH-50Mbps","package_code":9,"duration":['
    b'{"total_cost":999,"duration_code":"1","duration_title":"1 Month"},'
    b'{"total_cost":2800,"duration_code":"3","duration_title":"3 Months"},'
    b'{"total_cost":5300,"duration_code":"6","duration_title":"6 Months"},'
    b'{"total_cost":9999,"duration_code":"12","duration_title":"12 Months"},'
    b'{"total_cost":13500,"duration_code":"custom_1","duration_title":"12M + 1 IPTV"}]},'
    b'{"title":"TESTING","package_code":71,"duration":['
    b'{"total_cost":2,"duration_code":"1","duration_title":"1 Month"}]}],"session_id":'
)

# Tables of the product's shape (src/bhuktani/store/schema.py): the same columns,
# constraints and indexes on the rows the measured calls write.
SCHEMA = """
CREATE TABLE accounts (
    id {serial} PRIMARY KEY,
    kind VARCHAR(16) NOT NULL,
    env VARCHAR(4) NOT NULL,
    merchant_id BIGINT,
    code VARCHAR(64) NOT NULL,
    balance_paisa BIGINT NOT NULL DEFAULT 0,
    held_paisa BIGINT NOT NULL DEFAULT 0,
    consumed_paisa BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT accounts_identity UNIQUE (kind, env, code),
    CONSTRAINT account_kind CHECK (kind IN ('merchant', 'isp', 'funding', 'fees')),
    CONSTRAINT account_held_not_negative CHECK (held_paisa >= 0),
    CONSTRAINT merchant_available_not_negative
        CHECK (kind <> 'merchant' OR balance_paisa - held_paisa >= 0)
);
CREATE TABLE transfers (
    id {serial} PRIMARY KEY,
    kind VARCHAR(16) NOT NULL,
    debit_account_id BIGINT NOT NULL,
    credit_account_id BIGINT NOT NULL,
    amount_paisa BIGINT NOT NULL,
    pending_id BIGINT UNIQUE,
    payment_id BIGINT,
    note VARCHAR(500),
    created_ms BIGINT NOT NULL,
    CONSTRAINT transfer_amount_positive CHECK (amount_paisa > 0),
    CONSTRAINT transfer_kind CHECK (kind IN ('single', 'pending', 'post', 'void'))
);
CREATE INDEX transfers_payment ON transfers (payment_id);
CREATE TABLE sessions (
    id BIGINT PRIMARY KEY,
    merchant_id BIGINT NOT NULL,
    env VARCHAR(4) NOT NULL,
    service VARCHAR(64) NOT NULL,
    isp VARCHAR(64) NOT NULL,
    username VARCHAR(100) NOT NULL,
    reference VARCHAR(50),
    offer_json TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    payment_id BIGINT,
    created_ms BIGINT NOT NULL
);
CREATE TABLE payments (
    id BIGINT PRIMARY KEY,
    merchant_id BIGINT NOT NULL,
    env VARCHAR(4) NOT NULL,
    reference VARCHAR(50) NOT NULL,
    service VARCHAR(64) NOT NULL,
    isp VARCHAR(64) NOT NULL,
    username VARCHAR(100) NOT NULL,
    package_code VARCHAR(32),
    package_title VARCHAR(100) NOT NULL DEFAULT '',
    duration_code VARCHAR(32) NOT NULL,
    days INTEGER NOT NULL,
    amount_paisa BIGINT NOT NULL,
    session_id BIGINT,
    state VARCHAR(16) NOT NULL,
    isp_status VARCHAR(32) NOT NULL DEFAULT 'Sent',
    detail VARCHAR(500) NOT NULL DEFAULT '',
    hold_transfer_id BIGINT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    next_check_ms BIGINT,
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    checks INTEGER NOT NULL DEFAULT 0,
    flagged BOOLEAN NOT NULL DEFAULT false,
    CONSTRAINT payments_reference UNIQUE (merchant_id, env, reference),
    CONSTRAINT payment_state CHECK
        (state IN ('Queued', 'Processing', 'Success', 'Failed', 'Error', 'Expired'))
);
CREATE INDEX payments_due ON payments (state, next_check_ms);
"""

# The statements, in asyncpg's $n style; SQLite gets ?n.
INSERT_SESSION = (
    "INSERT INTO sessions (id, merchant_id, env, service, isp, username, reference,"
    " offer_json, expires_ms, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
)
INSERT_PAYMENT = (
    "INSERT INTO payments (id, merchant_id, env, reference, service, isp, username,"
    " package_code, package_title, duration_code, days, amount_paisa, session_id, state,"
    " next_check_ms, created_ms, updated_ms) VALUES ($1, $2, $3, $4, 'arrownet', 'arrownet',"
    " $5, NULL, $6, $7, $8, $9, NULL, 'Processing', $10, $11, $11)"
)
HOLD = (
    "UPDATE accounts SET held_paisa = held_paisa + $2"
    " WHERE id = $1 AND balance_paisa - held_paisa >= $2"
)
INSERT_TRANSFER = (
    "INSERT INTO transfers (kind, debit_account_id, credit_account_id, amount_paisa,"
    " pending_id, payment_id, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
)
POST_DEBIT = (
    "UPDATE accounts SET balance_paisa = balance_paisa - $2, held_paisa = held_paisa - $2,"
    " consumed_paisa = consumed_paisa + $2 WHERE id = $1"
    " RETURNING balance_paisa - held_paisa, consumed_paisa"
)
POST_CREDIT = "UPDATE accounts SET balance_paisa = balance_paisa + $2 WHERE id = $1"
# The payment by its primary key: `IS TRUE` keeps plans made while the table was small
# from reaching it through the (state, next_check_ms) index, as the product does.
MARK_SUCCESS = (
    "UPDATE payments SET state = 'Success', isp_status = 'Paid', detail = $2,"
    " updated_ms = $3, next_check_ms = NULL WHERE id = $1 AND (state = 'Processing') IS TRUE"
)

# PostgreSQL: each transaction as one statement, committed on its own (no BEGIN or COMMIT
# round trips), as the product's ledger/postgres.py does. Each step reads the rows of the one
# before it, so they run in order, the merchant's balance row last; credits that do not
# cover the hold fail the accounts' CHECK, which undoes the whole statement.
# $1 payment, $2 merchant account, $3 env, $4 reference, $5 username, $6 title,
# $7 duration, $8 days, $9 amount, $10 first check, $11 now, $12 ISP account.
PG_HOLD = f"""
WITH payment AS (
    {INSERT_PAYMENT} RETURNING id
), hold AS (
    INSERT INTO transfers (kind, debit_account_id, credit_account_id, amount_paisa,
        payment_id, created_ms)
    SELECT 'pending', $2, $12, $9, payment.id, $11 FROM payment
    RETURNING id
)
UPDATE accounts SET held_paisa = held_paisa + $9
WHERE id = $2 AND EXISTS (SELECT 1 FROM hold)
RETURNING (SELECT id FROM hold)
"""
# $1 payment, $2 merchant account, $3 ISP account, $4 amount, $5 hold, $6 now, $7 receipt.
PG_POST = """
WITH marked AS (
    UPDATE payments SET state = 'Success', isp_status = 'Paid', detail = $7,
        updated_ms = $6, next_check_ms = NULL
    WHERE id = $1 AND (state = 'Processing') IS TRUE
    RETURNING id
), closed AS (
    INSERT INTO transfers (kind, debit_account_id, credit_account_id, amount_paisa,
        pending_id, payment_id, created_ms)
    SELECT 'post', $2, $3, $4, $5, marked.id, $6 FROM marked
    RETURNING id
), credited AS (
    UPDATE accounts SET balance_paisa = balance_paisa + $4
    WHERE id = $3 AND EXISTS (SELECT 1 FROM closed)
    RETURNING id
)
UPDATE accounts SET balance_paisa = balance_paisa - $4, held_paisa = held_paisa - $4,
    consumed_paisa = consumed_paisa + $4
WHERE id = $2 AND EXISTS (SELECT 1 FROM credited)
RETURNING balance_paisa - held_paisa, consumed_paisa
"""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def random_id() -> int:
    return 1 + secrets.randbelow(ID_LIMIT - 1)


def q(sql: str) -> str:
    """$n -> ?n for sqlite3."""
    return sql.replace("$", "?")


class Conflict(Exception):
    """The reference is taken, or the credits do not cover the amount."""


# -- SQLite: one connection on one dedicated thread per process; a transaction is one
# -- call on that thread, so a commit costs two thread hops.


def _sqlite_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _settle(settled: list[tuple[asyncio.Future[Any], tuple[bool, Any]]]) -> None:
    for future, (ok, value) in settled:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], bool]


class SqliteStore:
    """One connection on one thread fed by a queue, as the product's store: write
    transactions queued together, or while the group runs, share one COMMIT, each body in
    its own savepoint."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="sqlite", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn = _sqlite_connect(self._path)
        # Processes queue for the write lock on a file lock, as the product's do: the
        # kernel wakes the next one at once, where SQLite's busy_timeout sleeps and retries.
        lock_fd = os.open(f"{self._path}-writer", os.O_RDWR | os.O_CREAT, 0o600)
        held: list[Job | None] = []
        while (job := held.pop() if held else self._jobs.get()) is not None:
            fn, future, is_tx = job
            if not is_tx:
                try:
                    outcome: tuple[bool, Any] = (True, fn(conn))
                except Exception as exc:
                    outcome = (False, exc)
                future.get_loop().call_soon_threadsafe(_settle, [(future, outcome)])
                continue
            group = [job]
            settled: list[tuple[asyncio.Future[Any], tuple[bool, Any]]] = []
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                conn.execute("BEGIN IMMEDIATE")
                self._join(group, held)
                while len(settled) < len(group):
                    fn, future, _ = group[len(settled)]
                    conn.execute("SAVEPOINT body")
                    try:
                        settled.append((future, (True, fn(conn))))
                    except Exception as exc:
                        conn.execute("ROLLBACK TO body")
                        settled.append((future, (False, exc)))
                    conn.execute("RELEASE body")
                    self._join(group, held)
                conn.execute("COMMIT")
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
            group[0][1].get_loop().call_soon_threadsafe(_settle, settled)
        conn.close()
        os.close(lock_fd)

    def _join(self, group: list[Job], held: list[Job | None]) -> None:
        """As the product's store: the group takes in what queues while it runs."""
        while len(group) < 64 and not held:
            try:
                queued = self._jobs.get_nowait()
            except queue.Empty:
                return
            if queued is None or not queued[2]:
                held.append(queued)
            else:
                group.append(queued)

    async def _queue(self, fn: Callable[[sqlite3.Connection], T], is_tx: bool) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((fn, future, is_tx))
        return await future

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._queue(fn, False)

    async def _tx(self, body: Callable[[sqlite3.Connection], T]) -> T:
        return await self._queue(body, True)

    async def accounts(self) -> dict[str, int]:
        rows = await self.call(lambda c: c.execute("SELECT code, id FROM accounts").fetchall())
        return {str(code): int(i) for code, i in rows}

    async def open_session(self, args: tuple[Any, ...]) -> None:
        await self._tx(lambda c: c.execute(q(INSERT_SESSION), args))

    async def hold(self, pay: tuple[Any, ...], debit: int, credit: int, amount: int) -> int:
        def body(c: sqlite3.Connection) -> int:
            try:
                c.execute(q(INSERT_PAYMENT), pay)
            except sqlite3.IntegrityError:
                raise Conflict("reference taken") from None
            row = c.execute(
                q(INSERT_TRANSFER), ("pending", debit, credit, amount, None, pay[0], now_ms())
            ).fetchone()
            if c.execute(q(HOLD), (debit, amount)).rowcount != 1:
                raise Conflict("credits")
            return int(row[0])

        return await self._tx(body)

    async def post(
        self, payment_id: int, hold_id: int, debit: int, credit: int, amount: int, receipt: str
    ) -> tuple[int, int]:
        def body(c: sqlite3.Connection) -> tuple[int, int]:
            c.execute(
                q(INSERT_TRANSFER), ("post", debit, credit, amount, hold_id, payment_id, now_ms())
            ).fetchone()
            c.execute(q(MARK_SUCCESS), (payment_id, receipt, now_ms()))
            c.execute(q(POST_CREDIT), (credit, amount))
            available, consumed = c.execute(q(POST_DEBIT), (debit, amount)).fetchone()
            return int(available), int(consumed)

        return await self._tx(body)

    async def ping(self) -> None:
        await self.call(lambda c: c.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        self._jobs.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)


# -- PostgreSQL: asyncpg, a pool of the product's default size (2..5) per process.


class PgStore:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str) -> PgStore:
        import asyncpg

        async def no_reset(conn: Any) -> None:
            """asyncpg's default sends RESET ALL, UNLISTEN *, ... on every release, one more
            round trip and transaction per acquire. This app leaves no session state behind
            (no LISTEN, advisory lock, cursor or SET), so there is nothing to reset.
            CEILING_PG_RESET=1 keeps the default."""

        reset = None if os.environ.get("CEILING_PG_RESET") == "1" else no_reset
        return cls(await asyncpg.create_pool(url, min_size=2, max_size=5, reset=reset))

    async def accounts(self) -> dict[str, int]:
        rows = await self._pool.fetch("SELECT code, id FROM accounts")
        return {str(r["code"]): int(r["id"]) for r in rows}

    async def open_session(self, args: tuple[Any, ...]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(INSERT_SESSION, *args)

    async def hold(self, pay: tuple[Any, ...], debit: int, credit: int, amount: int) -> int:
        import asyncpg

        try:
            hold_id = await self._pool.fetchval(PG_HOLD, *pay, credit)
        except asyncpg.UniqueViolationError:
            raise Conflict("reference taken") from None
        except asyncpg.CheckViolationError:
            raise Conflict("credits") from None
        return int(hold_id)

    async def post(
        self, payment_id: int, hold_id: int, debit: int, credit: int, amount: int, receipt: str
    ) -> tuple[int, int]:
        row = await self._pool.fetchrow(
            PG_POST, payment_id, debit, credit, amount, hold_id, now_ms(), receipt
        )
        return int(row[0]), int(row[1])

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    async def close(self) -> None:
        await self._pool.close()


async def open_store(url: str) -> SqliteStore | PgStore:
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"))
    return await PgStore.connect(url)


# -- the ISP, for the slow-ISP scenario: the calls a LIVE Arrownet commit makes.


class RawHttp:
    """The least HTTP/1.1 client for the ISP's protocol: keep-alive connections in a LIFO
    list, no cap, Content-Length bodies (what isp-sim speaks)."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float, connect_s: float) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._auth = f"Authorization: Bearer {api_key}\r\nHost: {self._host}\r\n"
        self._timeout_s, self._connect_s = timeout_s, connect_s
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        for attempt in (1, 2):
            reused = bool(self._idle)
            if reused:
                reader, writer = self._idle.pop()
            else:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self._host, self._port), self._connect_s
                )
            try:
                return await self._exchange(reader, writer, method, path, body)
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
                if not reused or attempt == 2:
                    raise  # a kept-alive connection the ISP had closed: once more, fresh
            except BaseException:
                writer.close()
                raise
        raise AssertionError("unreachable")

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        body: bytes,
    ) -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\n{self._auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        async with asyncio.timeout(self._timeout_s):
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionResetError("closed by the ISP")
            status = int(status_line.split()[1])
            length, keep = 0, True
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    keep = value.strip().lower() != b"close"
            data = await reader.readexactly(length)
        if keep:
            self._idle.append((reader, writer))
        else:
            writer.close()
        return status, data

    async def aclose(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


class AiohttpHttp:
    """aiohttp, as the product set it up before it had its own client (one session, no
    decompression, a connection cap per process), to price the client apart."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float, connect_s: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept-Encoding": "identity"}
        self._timeout_s, self._connect_s = timeout_s, connect_s
        self._session: Any = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        import aiohttp

        if self._session is None:  # a session belongs to the running event loop
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(
                    total=self._connect_s + self._timeout_s,
                    connect=self._connect_s,
                    sock_read=self._timeout_s,
                ),
                connector=aiohttp.TCPConnector(limit=1024, limit_per_host=0),
                auto_decompress=False,
            )
        headers = {"Content-Type": "application/json"} if body else None
        async with self._session.request(
            method, self._base_url + path, data=body or None, headers=headers
        ) as answer:
            return answer.status, await answer.read()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


PRICE_TTL_S = 30.0


class Isp:
    """The two calls of a LIVE Arrownet commit. CEILING_ISP_CLIENT=aiohttp uses aiohttp (as
    the product did; installed by `make dev`) instead of the raw client."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float, connect_s: float) -> None:
        client = RawHttp if os.environ.get("CEILING_ISP_CLIENT", "raw") == "raw" else AiohttpHttp
        self._http = client(base_url, api_key, timeout_s, connect_s)
        self._prices: dict[tuple[str, int], tuple[float, tuple[str, str, int]]] = {}
        self._asking: dict[tuple[str, int], asyncio.Future[tuple[str, str, int]]] = {}

    async def price(self, username: str, amount: int) -> tuple[str, str, int]:
        """The plan that costs amount, as the ISP priced it at most PRICE_TTL_S ago: the
        product keeps a look-up as long (BHUKTANI_ISP_LOOKUP_CACHE_S), so at 1 s of ISP
        latency neither asks the ISP twice per commit. As in the product, one look-up
        per key runs at a time, and in its last third a price is asked again in the
        background, so its expiry holds no commit back."""
        key = (username, amount)
        seen = self._prices.get(key)
        left = seen[0] - time.monotonic() if seen is not None else 0.0
        if seen is not None and left > 0:
            if left < PRICE_TTL_S / 3:
                self._ask(key)
            return seen[1]
        return await asyncio.shield(self._ask(key))

    def _ask(self, key: tuple[str, int]) -> asyncio.Future[tuple[str, str, int]]:
        running = self._asking.get(key)
        if running is None:
            running = asyncio.ensure_future(self._ask_price(*key))
            self._asking[key] = running
            running.add_done_callback(lambda done: self._asked(key, done))
        return running

    def _asked(self, key: tuple[str, int], done: asyncio.Future[tuple[str, str, int]]) -> None:
        del self._asking[key]
        if not done.cancelled() and done.exception() is None:
            self._prices[key] = (time.monotonic() + PRICE_TTL_S, done.result())

    async def _ask_price(self, username: str, amount: int) -> tuple[str, str, int]:
        status, raw = await self._http.request("GET", f"/arrownet/arrownet/subscribers/{username}")
        if status != 200:
            raise Conflict("no subscriber")
        body = orjson.loads(raw)
        for package in body["packages"]:
            for duration in package["durations"]:
                if duration["amount_paisa"] == amount:
                    return str(package["title"]), str(duration["code"]), int(duration["days"])
        raise Conflict("no such price")

    async def pay(self, payment: dict[str, Any]) -> str:
        status, raw = await self._http.request(
            "POST", "/arrownet/arrownet/payments", orjson.dumps(payment)
        )
        body = orjson.loads(raw)
        if status != 200 or body.get("status") != "paid":
            raise Conflict("not paid")
        return str(body["receipt"])

    async def aclose(self) -> None:
        await self._http.aclose()


# -- the app


def json_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


REFUSED = b'{"status":false,"state":"Error","error_code":"4000","error":"client_error"}'


def create_app() -> Starlette:
    url = os.environ["CEILING_DATABASE_URL"]
    isp_url = os.environ.get("CEILING_ISP_URL", "")
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await open_store(url)
        state["store"] = store
        state["accounts"] = await store.accounts()
        state["isp"] = (
            Isp(
                isp_url,
                os.environ.get("CEILING_ISP_KEY", ""),
                float(os.environ.get("CEILING_ISP_TIMEOUT_S", "30")),
                float(os.environ.get("CEILING_ISP_CONNECT_TIMEOUT_S", "2")),
            )
            if isp_url
            else None
        )
        try:
            yield
        finally:
            if state["isp"] is not None:
                await state["isp"].aclose()
            await store.close()

    async def details(request: Request) -> Response:
        data = orjson.loads(await request.body())
        accounts: dict[str, int] = state["accounts"]
        merchant = accounts[data["token"]]
        session_id = random_id()
        now = now_ms()
        await state["store"].open_session(
            (
                session_id,
                merchant,
                "test",
                "hashcnet-v2",
                data["service_slug"],
                data["username"],
                data.get("reference"),
                OFFER_JSON,
                now + 1800 * 1000,
                now,
            )
        )
        return json_response(DETAILS_HEAD + str(session_id).encode() + b',"status":true}')

    async def commit(request: Request) -> Response:
        data = orjson.loads(await request.body())
        accounts: dict[str, int] = state["accounts"]
        payment_id = random_id()
        debit, credit = accounts[data["token"]], accounts[isp_code(payment_id % ISP_SHARDS)]
        amount = round(float(data["amount"]) * 100)
        isp: Isp | None = state["isp"]
        env = "live" if isp is not None else "test"
        title, duration_code, days = "50Mbps", str(data["duration"]), 30
        now = now_ms()
        try:
            if isp is not None:
                title, duration_code, days = await isp.price(data["username"], amount)
            pay = (
                payment_id,
                debit,
                env,
                data["reference"],
                data["username"],
                title,
                duration_code,
                days,
                amount,
                now + 65_000,
                now,
            )
            hold_id = await state["store"].hold(pay, debit, credit, amount)
            receipt = "ceiling"
            if isp is not None:
                receipt = await isp.pay(
                    {
                        "payment_id": payment_id,
                        "username": data["username"],
                        "package_code": None,
                        "package_title": title,
                        "duration_code": duration_code,
                        "days": days,
                        "amount_paisa": amount,
                    }
                )
            available, consumed = await state["store"].post(
                payment_id, hold_id, debit, credit, amount, receipt
            )
        except Conflict:
            return json_response(REFUSED, 400)
        return json_response(
            orjson.dumps(
                {
                    "status": True,
                    "message": "Successfully Completed Transaction",
                    "detail": "Transaction successful",
                    "extra_data": {},
                    "state": "Success",
                    "id": payment_id,
                    "credits_consumed": consumed / 100,
                    "credits_available": available / 100,
                }
            )
        )

    async def healthz(request: Request) -> Response:
        await state["store"].ping()
        return json_response(b'{"status":"ok"}')

    routes = [
        Route("/api/servicegroup/details/hashcnet-v2/", details, methods=["POST"]),
        Route("/api/servicegroup/commit/arrownet/", commit, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def serving_app() -> Starlette:
    """The collector settings of `bhuktani serve` (`serving_app` in src/bhuktani/api/app.py),
    so that neither side wins on a setting the other could use."""
    app = create_app()
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 10)
    return app


# -- set-up and serving


def schema_for(url: str) -> list[str]:
    serial = "INTEGER" if url.startswith("sqlite:///") else "BIGSERIAL"
    text = SCHEMA.replace("{serial}", serial)
    return [s.strip() for s in text.split(";") if s.strip()]


def account_rows(tokens: list[str]) -> list[tuple[str, str, int | None, str, int]]:
    """A balance row per merchant (the token is its code), then the ISP payable's shards."""
    rows: list[tuple[str, str, int | None, str, int]] = []
    for i, token in enumerate(tokens, start=1):
        env = "test" if token.startswith("TEST:") else "live"
        rows.append(("merchant", env, i, token, BIG_BALANCE_PAISA))
    env = "test" if tokens and tokens[0].startswith("TEST:") else "live"
    rows.extend(("isp", env, None, isp_code(shard), 0) for shard in range(ISP_SHARDS))
    return rows


def init(url: str, tokens: list[str]) -> None:
    insert = (
        "INSERT INTO accounts (kind, env, merchant_id, code, balance_paisa)"
        " VALUES ($1, $2, $3, $4, $5)"
    )
    if url.startswith("sqlite:///"):
        conn = _sqlite_connect(url.removeprefix("sqlite:///"))
        for statement in schema_for(url):
            conn.execute(statement)
        conn.executemany(q(insert), account_rows(tokens))
        conn.close()
        return

    async def pg() -> None:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            for statement in schema_for(url):
                await conn.execute(statement)
            await conn.executemany(insert, account_rows(tokens))
        finally:
            await conn.close()

    asyncio.run(pg())


def uvicorn_config(host: str, port: int) -> Any:
    import uvicorn

    # The settings of `bhuktani serve` (src/bhuktani/api/serving.py).
    return uvicorn.Config(
        "ceiling_app:serving_app",
        factory=True,  # importable: this script's folder leads sys.path, in workers too
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=30,
        backlog=2048,
        loop="uvloop",
        http="httptools",
    )


def serve(host: str, port: int, workers: int) -> None:
    """One process; or, as `bhuktani serve --workers N`, a listening socket per worker
    (SO_REUSEPORT) opened by the parent, so that both servers split wrk's connections
    alike. No restarts: a worker that dies ends the run."""
    import multiprocessing
    import signal
    import socket

    import uvicorn

    if workers == 1:
        uvicorn.Server(uvicorn_config(host, port)).run()
        return
    sockets = []
    for _ in range(workers):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sockets.append(sock)
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=_worker, args=(host, port, sock)) for sock in sockets]
    for proc in procs:
        proc.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5) and all(proc.is_alive() for proc in procs):
        pass
    for proc in procs:
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.join()


def _worker(host: str, port: int, sock: Any) -> None:
    import uvicorn

    config = uvicorn_config(host, port)
    config.configure_logging()
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_init = sub.add_parser("init", help="create the tables and one account per token")
    p_init.add_argument("tokens", nargs="+")
    p_serve = sub.add_parser("serve", help="serve on uvicorn, as bhuktani serve does")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=8001)
    p_serve.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "init":
        init(os.environ["CEILING_DATABASE_URL"], args.tokens)
    else:
        serve(args.host, args.port, args.workers)


if __name__ == "__main__":
    main(sys.argv[1:])
