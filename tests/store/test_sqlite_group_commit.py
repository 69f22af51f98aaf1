"""SQLite's write transactions queued together share one COMMIT (store/sqlite.py): each
still succeeds or fails alone, nobody hears of a result its COMMIT has not made durable,
and no id of a row the group created is remembered before the group commits. A group takes
in the transactions queued while it runs, but no other job overtakes. Processes queue for
the write lock on a file lock of their own."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bhuktani.ledger import accounts as ledger
from bhuktani.store import sqlite as store
from bhuktani.store.base import Tx, UniqueViolation
from bhuktani.store.migrate import upgrade
from tests.support import holding_writer_lock


class Connection:
    """The real connection, counting COMMITs, and failing them while `fail_commit`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.commits = 0
        self.fail_commit = False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            if self.fail_commit:
                raise sqlite3.OperationalError("disk I/O error")
            self.commits += 1
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture
async def sqlite_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[store.SqliteDatabase, list[Connection]]]:
    url = f"sqlite:///{tmp_path / 'group.db'}"
    upgrade(url)
    opened: list[Connection] = []
    real_connect = store._connect

    def connect(path: str) -> Any:
        opened.append(Connection(real_connect(path)))
        return opened[-1]

    monkeypatch.setattr(store, "_connect", connect)
    db = store.SqliteDatabase(url)
    await db.run(lambda tx: tx.execute("CREATE TABLE t (k TEXT PRIMARY KEY)"))
    yield db, opened
    await db.close()


def insert(key: str, *, fail: bool = False, hold_s: float = 0.0) -> Any:
    async def body(tx: Tx) -> str:
        time.sleep(hold_s)  # keeps the SQLite thread busy while the others queue
        await tx.execute("INSERT INTO t (k) VALUES ($1)", key)
        if fail:
            raise ValueError(f"{key} refused after its insert")
        return key

    return body


async def holding_the_thread(db: store.SqliteDatabase, key: str = "first") -> asyncio.Future[str]:
    """A write that keeps the SQLite thread busy for 0.2 s, returned once the thread is
    inside it: what is queued meanwhile queues behind it."""
    running = asyncio.ensure_future(db.run(insert(key, hold_s=0.2)))
    await asyncio.sleep(0.05)
    return running


async def keys(db: store.SqliteDatabase) -> set[str]:
    rows = await db.read(lambda tx: tx.fetch("SELECT k FROM t"))
    return {row["k"] for row in rows}


async def test_bodies_queued_together_commit_together_and_a_failing_one_rolls_back_alone(
    sqlite_db: tuple[store.SqliteDatabase, list[Connection]],
) -> None:
    db, opened = sqlite_db
    commits_before = opened[0].commits
    first = await holding_the_thread(db)
    bodies = [insert(f"k{i}", fail=i == 7) for i in range(20)]
    bodies.append(insert("k3"))  # the same key again: a unique violation, alone too
    outcomes = await asyncio.gather(*(db.run(b) for b in bodies), return_exceptions=True)
    assert await first == "first"
    # The 21 queued while `first` ran joined its group: one COMMIT for all.
    assert opened[0].commits - commits_before == 1

    assert isinstance(outcomes[7], ValueError)
    assert isinstance(outcomes[20], UniqueViolation)
    assert [o for i, o in enumerate(outcomes) if i not in (7, 20)] == [
        f"k{i}" for i in range(20) if i != 7
    ]
    assert await keys(db) == {"first"} | {f"k{i}" for i in range(20) if i != 7}


async def test_a_job_that_is_not_a_write_transaction_ends_the_intake_of_a_group(
    sqlite_db: tuple[store.SqliteDatabase, list[Connection]],
) -> None:
    db, opened = sqlite_db
    commits_before = opened[0].commits
    first = await holding_the_thread(db)
    joins = asyncio.ensure_future(db.run(insert("joins")))
    await asyncio.sleep(0.01)
    read = asyncio.ensure_future(keys(db))
    await asyncio.sleep(0.01)
    later = asyncio.ensure_future(db.run(insert("later")))
    assert [await first, await joins, await later] == ["first", "joins", "later"]
    # The read ran after the group it was queued behind had committed, and before the
    # write queued after it: in the order they were asked for.
    assert await read == {"first", "joins"}
    # The group of `first` and `joins`, the read's own, and `later`'s.
    assert opened[0].commits - commits_before == 3


async def test_a_group_takes_no_more_than_max_group_bodies(
    sqlite_db: tuple[store.SqliteDatabase, list[Connection]],
) -> None:
    db, opened = sqlite_db
    commits_before = opened[0].commits
    first = await holding_the_thread(db)
    queued = [db.run(insert(f"k{i}")) for i in range(store.MAX_GROUP)]
    await asyncio.gather(first, *queued)
    # `first` and MAX_GROUP - 1 of those queued behind it, then the last one alone.
    assert opened[0].commits - commits_before == 2


async def test_a_commit_that_fails_fails_every_body_of_its_group_and_keeps_nothing(
    sqlite_db: tuple[store.SqliteDatabase, list[Connection]],
) -> None:
    db, opened = sqlite_db
    first = await holding_the_thread(db)
    opened[0].fail_commit = True
    outcomes = await asyncio.gather(
        *(db.run(insert(f"k{i}")) for i in range(5)), return_exceptions=True
    )
    with pytest.raises(sqlite3.OperationalError):
        await first
    opened[0].fail_commit = False
    assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes)
    assert await keys(db) == set()
    assert await db.run(insert("after")) == "after"  # the connection is usable again


async def test_an_account_created_in_a_group_is_not_remembered_until_the_group_commits(
    sqlite_db: tuple[store.SqliteDatabase, list[Connection]],
) -> None:
    db, opened = sqlite_db

    async def account(tx: Tx) -> int:
        return await ledger.ensure_account(tx, "isp", "live", "isp:new")

    blocker = await holding_the_thread(db, "blocker")
    opened[0].fail_commit = True
    # One group: the second body finds the row the first created, which the failed
    # COMMIT then drops. Had the second remembered its id, a later payment would post to
    # an account that does not exist.
    outcomes = await asyncio.gather(db.run(account), db.run(account), return_exceptions=True)
    opened[0].fail_commit = False
    with pytest.raises(sqlite3.OperationalError):
        await blocker
    assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes)
    assert ("account", "isp", "live", "isp:new") not in db.memo
    created = await db.run(account)
    assert db.memo.get(("account", "isp", "live", "isp:new")) is None  # created here
    assert await db.run(account) == created
    assert db.memo[("account", "isp", "live", "isp:new")] == created


async def test_write_transactions_queue_on_the_writer_lock_file(
    sqlite_db: tuple[store.SqliteDatabase, list[Connection]], tmp_path: Path
) -> None:
    """Another process holding the writer lock (here: this test, on a file description of
    its own) holds back every write transaction until it lets go."""
    db, _ = sqlite_db
    with holding_writer_lock(tmp_path / "group.db"):
        write = asyncio.create_task(
            db.run(lambda tx: tx.execute("INSERT INTO t (k) VALUES ($1)", "held back"))
        )
        await asyncio.sleep(0.3)
        assert not write.done(), "a write went ahead of the lock's holder"
    assert await asyncio.wait_for(write, 5) == 1
