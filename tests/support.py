"""Helpers the tests share: settings for fast runs, merchants, the books' invariants."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bhuktani.isps.base import Order
from bhuktani.merchants import service as merchants
from bhuktani.payments.sessions import random_id
from bhuktani.settings import Settings
from bhuktani.store import Database

# What test servers take to read /metrics (BHUKTANI_METRICS_TOKEN).
METRICS_TOKEN = "metrics-token-for-tests"
METRICS_AUTH = {"authorization": f"Bearer {METRICS_TOKEN}"}
# Reconciliation compressed from minutes to fractions of a second.
FAST = {
    "metrics_token": METRICS_TOKEN,
    # Tests revoke and disable and expect it at once; tests/merchants/test_auth_cache.py tests the cache.
    "auth_cache_s": 0,
    "reconcile_poll_s": 0.05,
    "reconcile_backoff_s": [0.1, 0.1, 0.2, 0.3, 0.5],
    "reconcile_retry_failed_s": 0.1,
    "sandbox_slow_delay_s": 0.4,
    "sandbox_settle_window_s": 0.3,
    "isp_timeout_s": 1.0,
    "isp_settle_window_s": 0.3,
}
KEY = b"bhuktani-development-key"


def fast_settings(db_url: str, **overrides: Any) -> Settings:
    return Settings(database_url=db_url, **{**FAST, **overrides})


def fast_env(db_url: str, **overrides: str) -> dict[str, str]:
    """The same settings as environment variables, for a server in another process."""
    env = dict(os.environ)
    env["BHUKTANI_DATABASE_URL"] = db_url
    for name, value in FAST.items():
        env[f"BHUKTANI_{name.upper()}"] = (
            "[" + ",".join(str(v) for v in value) + "]" if isinstance(value, list) else str(value)
        )
    env.update(overrides)
    return env


async def new_merchant(
    db: Database,
    *,
    test_rupees: int = 1_000_000,
    live_rupees: int = 0,
    services: str = "all",
    name: str = "test merchant",
) -> merchants.NewMerchant:
    return await merchants.create(
        db,
        name,
        key=KEY,
        operator="test",
        services=services,
        test_credits_paisa=test_rupees * 100,
        live_credits_paisa=live_rupees * 100,
    )


def arrownet_order(merchant_id: int, payment_id: int | None = None) -> Order:
    """Arrownet's sandbox subscriber, 50Mbps for 1 month, as the catalog prices it."""
    return Order(
        payment_id=random_id() if payment_id is None else payment_id,
        merchant_id=merchant_id,
        isp="arrownet",
        username="Pradhanang",
        package_code=None,
        package_title="50Mbps",
        duration_code="1",
        days=30,
        amount_paisa=1695_00,
    )


async def assert_books_balance(db: Database) -> None:
    """The ledger's invariants (DESIGN.md), recomputed from the append-only transfers."""
    async with db.transaction() as tx:
        if db.dialect == "postgresql":
            # One snapshot for all the reads below, while reconcilers keep settling.
            await tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        total = await tx.fetchrow("SELECT COALESCE(SUM(balance_paisa), 0) AS s FROM accounts")
        assert total is not None and int(total["s"]) == 0, "the ledger sums to zero"
        accounts = await tx.fetch(
            "SELECT id, kind, balance_paisa, held_paisa FROM accounts ORDER BY id"
        )
        transfers = await tx.fetch(
            "SELECT id, kind, debit_account_id, credit_account_id, amount_paisa, pending_id"
            " FROM transfers"
        )
        payments = await tx.fetch("SELECT id, state, hold_transfer_id FROM payments")
    balance = {int(a["id"]): 0 for a in accounts}
    held = {int(a["id"]): 0 for a in accounts}
    closed = {int(t["pending_id"]) for t in transfers if t["pending_id"] is not None}
    for t in transfers:
        amount = int(t["amount_paisa"])
        if t["kind"] in ("single", "post"):
            balance[int(t["debit_account_id"])] -= amount
            balance[int(t["credit_account_id"])] += amount
        if t["kind"] == "pending" and int(t["id"]) not in closed:
            held[int(t["debit_account_id"])] += amount
    for a in accounts:
        account_id = int(a["id"])
        assert int(a["balance_paisa"]) == balance[account_id], f"account {account_id} balance"
        assert int(a["held_paisa"]) == held[account_id], f"account {account_id} held"
        if a["kind"] == "merchant":
            assert int(a["balance_paisa"]) - int(a["held_paisa"]) >= 0, "available >= 0"
    for p in payments:
        hold = p["hold_transfer_id"]
        assert hold is not None, f"payment {p['id']} has a hold transfer"
        is_open = int(hold) not in closed
        if p["state"] == "Processing":
            assert is_open, f"Processing payment {p['id']} keeps its hold"
        else:
            assert not is_open, f"final payment {p['id']} has no open hold"


@contextmanager
def holding_writer_lock(database: Path) -> Iterator[None]:
    """SQLite's writer lock file (`<db>-writer`) held as another process would hold it: on
    a file description of its own, until the block ends."""
    other = os.open(f"{database}-writer", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]
    # The database it serves, for a test's CLI commands against it.
    db_url: str = ""

    def log(self) -> str:
        return self.log_path.read_text()


def wait_healthy(base_url: str, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(base_url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become healthy")


@contextmanager
def running_server(
    db_url: str, log_path: Path, *, workers: int = 1, reconciler: bool = True, **env: str
) -> Iterator[Server]:
    """`bhuktani serve` in its own process, as an operator starts it."""
    port = free_port()
    command = [sys.executable, "-m", "bhuktani", "serve", "--port", str(port)]
    command += ["--workers", str(workers), "--reconciler" if reconciler else "--no-reconciler"]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, env=fast_env(db_url, **env), stdout=log_file, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process)
        yield Server(base_url, log_path, process, db_url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def eventually(check: Any, timeout_s: float = 10.0, every_s: float = 0.05) -> Any:
    """Poll an async check until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout_s}s; last: {result!r}")
        await asyncio.sleep(every_s)


class IspDouble:
    """What a test's stand-in for an ISP system shares with every LIVE provider: its
    subscribers live at the ISP, it holds no connections to wait for or close."""

    lookup_in = None
    waiting = 0

    async def aclose(self) -> None:
        pass


def cli(server_db_url: str, *args: str) -> str:
    """`bhuktani ARGS` as an operator runs it against the server's database: its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "bhuktani", *args],
        env=fast_env(server_db_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def cli_json(server_db_url: str, *args: str) -> dict[str, Any]:
    """The JSON object `bhuktani ARGS --json` prints last."""
    last: dict[str, Any] = json.loads(cli(server_db_url, *args, "--json").strip().splitlines()[-1])
    return last
