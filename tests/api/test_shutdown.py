"""Graceful shutdown: SIGTERM while payments are in flight.

`bhuktani serve` is stopped while many commits are between their steps: TEST ones on the
in-process sandbox (answered at once) and LIVE ones through a real `isp-sim` whose every
answer takes a while, so that they are surely inside the ISP call when the signal comes.
The server must stop taking connections, finish what it took, leave the books whole and
exit 0; a new process on the same database must finish what was left Processing. The
separate `bhuktani worker` must also stop cleanly in the middle of its work."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bhuktani import runtime
from bhuktani.clock import now_ms
from bhuktani.isps.base import Order
from bhuktani.merchants.service import Principal
from bhuktani.payments import records
from bhuktani.payments.sessions import random_id
from bhuktani.store import Database
from tests.support import (
    assert_books_balance,
    eventually,
    fast_env,
    fast_settings,
    free_port,
    new_merchant,
    wait_healthy,
)

COMMIT = "/api/servicegroup/commit/arrownet/"
PRICE_PAISA = 1695_00
# uvicorn's timeout_graceful_shutdown in `bhuktani serve`.
GRACEFUL_TIMEOUT_S = 30
SIM_KEY = "sim-key"
# Each isp-sim answer (look-up, payment, status) comes this late, so a LIVE commit spends
# about twice this in ISP calls; slow-user's payment answer comes later than the
# gateway's ISP timeout, so it is held Processing.
SIM_LATENCY_S = 1.0
SIM_SLOW_DELAY_S = 5.0
ISP_TIMEOUT_S = 2.5
# The users whose payment isp-sim answers late (the others drop or refuse at once).
SIM_LATE = {"Pradhanang", "slow-user"}
# What each scenario user's commit answers at once (SANDBOX.md), on both paths.
EXPECTED = {
    "Pradhanang": "Success",
    "slow-user": "Processing",
    "flaky-user": "Processing",
    "lost-user": "Processing",
    "refuse-user": "1021",
}
LIVE_MIX = {"Pradhanang": 8, "slow-user": 4, "flaky-user": 4, "lost-user": 2, "refuse-user": 2}
# TEST commits (the in-process sandbox answers at once) sent back to back on this many
# connections, from before the signal to after it.
TEST_STREAMS = 8
# Refusals a commit may get by the documents; anything else (a 5xx above all) is a bug.
DOCUMENTED_REFUSALS = {"1011", "1013", "1016", "1018", "1019", "1021"}


@pytest.fixture(scope="module")
def isp_sim() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bhuktani",
            "isp-sim",
            "--port",
            str(port),
            "--api-key",
            SIM_KEY,
            "--latency-s",
            str(SIM_LATENCY_S),
            "--slow-delay-s",
            str(SIM_SLOW_DELAY_S),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


def server_env(db_url: str, sim_url: str) -> dict[str, str]:
    return fast_env(
        db_url,
        BHUKTANI_ISPS__ARROWNET__BASE_URL=sim_url,
        BHUKTANI_ISPS__ARROWNET__API_KEY=SIM_KEY,
        BHUKTANI_ISP_TIMEOUT_S=str(ISP_TIMEOUT_S),
        # Timeouts of slow-user are expected here; they must not degrade the ISP (1018).
        BHUKTANI_ISP_BREAKER_FAILURES="1000",
        # Streams of commits from one merchant, faster than the default 100 a second: the
        # drain is tested here, the rate limits in tests/api/test_rate_limits.py.
        BHUKTANI_RATE_PER_S="100000",
        BHUKTANI_RATE_BURST="100000",
    )


@dataclass
class Serve:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def serve(env: dict[str, str], log_path: Path) -> Iterator[Serve]:
    """`bhuktani serve` as an operator starts it; the test sends the signals. Whatever
    is still running at the end is killed, so that no test leaves a server behind."""
    port = free_port()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "bhuktani", "serve", "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process)
        yield Serve(base_url, process, log_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def wait_exit(process: subprocess.Popen[bytes], timeout_s: float) -> int | None:
    """The exit code, or None if the process is still running after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return process.poll()


def commit_body(token: str, username: str, reference: str) -> dict[str, Any]:
    return {
        "token": token,
        "username": username,
        "amount": "1695.00",
        "duration": 1,
        "reference": reference,
    }


@dataclass
class Sent:
    env: str
    username: str
    reference: str
    status: int | None = None
    body: dict[str, Any] | None = None
    error: str | None = None
    answered_at: float = 0.0


def assert_well_formed(sent: Sent) -> None:
    """A documented answer: 200 with the state the scenario gives, or the documented
    refusal; never a 5xx, never a body that is not the envelope."""
    assert sent.status is not None and sent.body is not None, sent
    assert sent.status < 500, sent
    expected = EXPECTED[sent.username]
    if sent.status == 200:
        assert sent.body["status"] is True, sent
        assert sent.body["state"] == expected, sent
        assert isinstance(sent.body["id"], int), sent
        assert sent.body["credits_consumed"] == PRICE_PAISA / 100, sent
        return
    assert sent.status == 400, sent
    assert sent.body["status"] is False and sent.body["state"] == "Error", sent
    assert sent.body["error_code"] in DOCUMENTED_REFUSALS, sent
    assert sent.body["error_code"] == expected, sent


async def post(http: httpx.AsyncClient, token: str, sent: Sent) -> Sent:
    try:
        response = await http.post(COMMIT, json=commit_body(token, sent.username, sent.reference))
    except httpx.TransportError as exc:
        sent.error = f"{type(exc).__name__}: {exc}"
    else:
        sent.status = response.status_code
        try:
            sent.body = response.json()
        except ValueError:
            sent.body = {"unreadable": response.text}
    sent.answered_at = time.monotonic()
    return sent


def plan(mix: dict[str, int], env: str) -> list[Sent]:
    return [
        Sent(env, username, f"{env}-{username}-{uuid.uuid4().hex[:10]}")
        for username, count in mix.items()
        for _ in range(count)
    ]


async def rows_of(db: Database, merchant_id: int) -> dict[str, dict[str, Any]]:
    """The merchant's payments by reference (references are unique per environment, and
    ours carry the environment), each with its hold transfer."""
    async with db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT p.id, p.env, p.reference, p.state, p.amount_paisa, p.lease_until_ms,"
            " p.hold_transfer_id, t.kind AS hold_kind, t.payment_id AS hold_payment_id,"
            " t.amount_paisa AS hold_amount_paisa"
            " FROM payments p LEFT JOIN transfers t ON t.id = p.hold_transfer_id"
            " WHERE p.merchant_id = $1",
            merchant_id,
        )
    return {str(r["reference"]): dict(r) for r in rows}


def assert_each_row_has_its_hold(rows: dict[str, dict[str, Any]]) -> None:
    for reference, row in rows.items():
        assert row["hold_transfer_id"] is not None, reference
        assert row["hold_kind"] == "pending", (reference, row)
        assert int(row["hold_payment_id"]) == int(row["id"]), (reference, row)
        assert int(row["hold_amount_paisa"]) == int(row["amount_paisa"]), (reference, row)


async def sim_applied(sim_url: str) -> set[int]:
    headers = {"Authorization": f"Bearer {SIM_KEY}"}
    async with httpx.AsyncClient(base_url=sim_url, timeout=10, headers=headers) as http:
        response = await http.get("/_sim/applied")
    assert response.status_code == 200, response.text
    return {int(p["payment_id"]) for p in response.json()["payments"]}


async def sandbox_applied(db: Database, merchant_id: int) -> set[int]:
    async with db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT payment_id FROM sandbox_payments WHERE merchant_id = $1", merchant_id
        )
    return {int(r["payment_id"]) for r in rows}


async def stream(base_url: str, token: str, worker: int, stop: asyncio.Event) -> list[Sent]:
    """TEST commits one after another on one keep-alive connection, from before the signal
    until the server has refused one or the test says stop."""
    usernames = list(EXPECTED)
    sent: list[Sent] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        for n in range(10_000):
            username = usernames[(worker + n) % len(usernames)]
            reference = f"test-{username}-{worker}-{n}-{uuid.uuid4().hex[:6]}"
            sent.append(await post(http, token, Sent("test", username, reference)))
            if sent[-1].error is not None or stop.is_set():
                break
    return sent


async def probe(base_url: str, token: str, stop: asyncio.Event) -> list[Sent]:
    """A new connection every few milliseconds after the signal, until the server has
    refused a few or the test says stop."""
    probes: list[Sent] = []
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
        for n in range(1_000):
            reference = f"late-{n}-{uuid.uuid4().hex[:8]}"
            probes.append(await post(http, token, Sent("test", "Pradhanang", reference)))
            if sum(p.error is not None for p in probes) >= 5 or stop.is_set():
                break
            await asyncio.sleep(0.02)
    return probes


async def test_sigterm_while_commits_are_in_flight_drains_them_and_keeps_the_books(
    db_url: str, db: Database, isp_sim: str, tmp_path: Path
) -> None:
    # The TEST streams pay until the signal: 475-600 payments of 1,695 rupees were seen
    # before it on a busy machine, so a million rupees could run out first (1016).
    merchant = await new_merchant(db, test_rupees=10_000_000, live_rupees=1_000_000)
    tokens = {"test": merchant.test_token, "live": merchant.live_token}
    live = plan(LIVE_MIX, "live")
    env = server_env(db_url, isp_sim)
    with serve(env, tmp_path / "serve.log") as server:
        stop = asyncio.Event()
        streams = [
            asyncio.create_task(stream(server.base_url, tokens["test"], n, stop))
            for n in range(TEST_STREAMS)
        ]
        count = len(live)
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as http:
            in_flight = [asyncio.create_task(post(http, tokens["live"], s)) for s in live]

            async def live_ones_inside_the_isp_call() -> bool:
                rows = await rows_of(db, merchant.merchant_id)
                return all(s.reference in rows for s in live)

            # Step 1 of every LIVE commit is done (its row exists), so each one is inside
            # the server, waiting on the ISP, when the signal comes.
            await eventually(live_ones_inside_the_isp_call, timeout_s=20, every_s=0.02)
            waiting = [t for t, s in zip(in_flight, live, strict=True) if s.username in SIM_LATE]
            assert not any(t.done() for t in waiting), "the signal came too late"
            signalled_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            probing = asyncio.create_task(probe(server.base_url, tokens["test"], stop))
            answers = await asyncio.gather(*in_flight)
        stop.set()
        probes = await probing
        streamed = [s for sent in await asyncio.gather(*streams) for s in sent]
        exit_code = await wait_exit(server.process, GRACEFUL_TIMEOUT_S + 5)
        stopped_in_s = time.monotonic() - signalled_at
        assert exit_code is not None, "the server did not stop within the graceful timeout"
        assert stopped_in_s < GRACEFUL_TIMEOUT_S, stopped_in_s
        log = server.log()

    # Every commit inside the server at the signal was finished and answered as documented.
    for sent in answers:
        assert sent.error is None, f"in-flight commit cut off: {sent}"
        assert_well_formed(sent)
    assert "Traceback" not in log, log

    # New connections were refused while the server was still draining; from the first
    # refusal on, every one. What got in before it saw the signal was answered in full.
    refused = [p for p in probes if p.error is not None]
    assert refused, f"no new connection was refused after SIGTERM: {probes}"
    first = probes.index(refused[0])
    assert all(p.error is not None for p in probes[first:]), probes
    assert refused[0].answered_at < max(s.answered_at for s in answers), (
        "the server kept taking connections until its in-flight commits were done"
    )
    answered = [s for s in [*answers, *probes, *streamed] if s.error is None]
    cut = [s for s in [*probes, *streamed] if s.error is not None]
    assert len([s for s in streamed if s.error is None]) >= TEST_STREAMS, "streams ran"
    for sent in answered:
        assert_well_formed(sent)

    # Nothing half-written: a row, with its hold, for exactly the commits that were
    # answered (step 1 runs for all but 1018/1019 refusals); none for a cut connection.
    rows = await rows_of(db, merchant.merchant_id)
    assert_each_row_has_its_hold(rows)
    await assert_books_balance(db)
    for sent in cut:
        assert sent.reference not in rows, f"a request cut off was processed: {sent}"
    assert set(rows) == {s.reference for s in answered}
    for sent in answered:
        row = rows[sent.reference]
        assert sent.body is not None
        if sent.status == 200:
            assert int(row["id"]) == sent.body["id"], (sent, row)
        state = EXPECTED[sent.username]
        if state == "Processing":
            # The in-process reconciler may have finished it before the server stopped.
            assert row["state"] in ("Processing", "Success", "Failed"), (sent, row)
        else:
            assert row["state"] == ("Success" if state == "Success" else "Failed"), (sent, row)
    # The reconciler finished its round before it stopped: no Processing payment is left
    # leased to a process that is gone.
    stopped_ms = now_ms()
    for reference, row in rows.items():
        if row["state"] == "Processing":
            assert int(row["lease_until_ms"]) <= stopped_ms, (reference, row)

    # A new process on the same database settles what was left Processing.
    with serve(env, tmp_path / "restart.log") as restarted:

        async def all_final() -> bool:
            now = await rows_of(db, merchant.merchant_id)
            return all(r["state"] != "Processing" for r in now.values())

        await eventually(all_final, timeout_s=30)
        restarted.process.send_signal(signal.SIGTERM)
        restart_exit_code = await wait_exit(restarted.process, GRACEFUL_TIMEOUT_S + 5)

    final = await rows_of(db, merchant.merchant_id)
    assert set(final) == set(rows)
    assert_each_row_has_its_hold(final)
    await assert_books_balance(db)
    for sent in answered:
        expected = "Failed" if sent.username in ("lost-user", "refuse-user") else "Success"
        assert final[sent.reference]["state"] == expected, (sent, final[sent.reference])
    # No money lost or made up across the restart: what each ISP applied is exactly what
    # we captured.
    captured = {int(r["id"]) for r in final.values() if r["state"] == "Success"}
    live_ids = {int(r["id"]) for r in final.values() if r["env"] == "live"}
    assert (await sim_applied(isp_sim)) & live_ids == captured & live_ids
    test_ids = {int(r["id"]) for r in final.values() if r["env"] == "test"}
    assert await sandbox_applied(db, merchant.merchant_id) == captured & test_ids

    assert exit_code == 0, f"serve exited {exit_code} on SIGTERM"
    assert restart_exit_code == 0, f"the restarted serve exited {restart_exit_code}"


@pytest.mark.parametrize("workers", [1, 2])
async def test_serve_exits_0_on_sigterm(db_url: str, tmp_path: Path, workers: int) -> None:
    """An operator's stop (systemd, Kubernetes) is a clean exit, not a crash."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bhuktani", "serve", "--port", str(port), "--workers", str(workers)],
        env=fast_env(db_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        process.send_signal(signal.SIGTERM)
        exit_code = await wait_exit(process, GRACEFUL_TIMEOUT_S + 5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert exit_code == 0, f"serve --workers {workers} exited {exit_code} on SIGTERM"


# The separate worker ---------------------------------------------------------------------

HELD = {"flaky-user": 120, "lost-user": 80}


async def open_held(gateway: runtime.Gateway, merchant_id: int, username: str) -> int:
    """Step 1 and the ISP call of a commit whose process died before step 3; due at once."""
    order = Order(
        payment_id=random_id(),
        merchant_id=merchant_id,
        isp="arrownet",
        username=username,
        package_code=None,
        package_title="50Mbps",
        duration_code="1",
        days=30,
        amount_paisa=PRICE_PAISA,
    )
    principal = Principal(merchant_id, "test", "all")
    reference = f"held-{uuid.uuid4().hex[:12]}"
    await records.open_payment(
        gateway.book, principal, "arrownet", order, reference, None, first_check_ms=0
    )
    await gateway.sandbox.pay(order)
    return order.payment_id


async def states(db: Database, merchant_id: int) -> dict[int, tuple[str, int]]:
    """Each payment's state and lease."""
    async with db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT id, state, lease_until_ms FROM payments WHERE merchant_id = $1", merchant_id
        )
    return {int(r["id"]): (str(r["state"]), int(r["lease_until_ms"])) for r in rows}


def start_worker(db_url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bhuktani", "worker"],
        # Small rounds, so that the worker is surely in the middle of its work.
        env=fast_env(db_url, BHUKTANI_RECONCILE_BATCH="5"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_worker_stops_on_sigterm_in_the_middle_of_its_work(db_url: str, db: Database) -> None:
    gateway = runtime.build(db, fast_settings(db_url))
    merchant = await new_merchant(db)
    expected: dict[int, str] = {}
    for username, count in HELD.items():
        for _ in range(count):
            payment_id = await open_held(gateway, merchant.merchant_id, username)
            expected[payment_id] = "Success" if username == "flaky-user" else "Failed"
    assert len(expected) == sum(HELD.values())

    worker = start_worker(db_url)
    try:

        async def some_settled() -> bool:
            found = await states(db, merchant.merchant_id)
            return any(state != "Processing" for state, _ in found.values())

        await eventually(some_settled, timeout_s=20, every_s=0.01)
        worker.send_signal(signal.SIGTERM)
        exit_code = await wait_exit(worker, 15)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert exit_code == 0, f"the worker exited {exit_code} on SIGTERM"

    stopped = await states(db, merchant.merchant_id)
    left = [p for p, (state, _) in stopped.items() if state == "Processing"]
    assert left, "the worker had finished before the signal: nothing shows it stops mid-work"
    stopped_ms = now_ms()
    for payment_id in left:
        assert stopped[payment_id][1] <= stopped_ms, "a payment is left leased to a dead worker"
    for payment_id, (state, _) in stopped.items():
        assert state in ("Processing", expected[payment_id]), (payment_id, state)
    await assert_books_balance(db)

    # Started again, it finishes the rest, and stops cleanly again.
    worker = start_worker(db_url)
    try:

        async def all_settled() -> bool:
            found = await states(db, merchant.merchant_id)
            return all(state != "Processing" for state, _ in found.values())

        await eventually(all_settled, timeout_s=30)
        worker.send_signal(signal.SIGTERM)
        exit_code = await wait_exit(worker, 15)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert exit_code == 0, f"the worker exited {exit_code} on its second SIGTERM"
    assert {p: s for p, (s, _) in (await states(db, merchant.merchant_id)).items()} == expected
    await assert_books_balance(db)
