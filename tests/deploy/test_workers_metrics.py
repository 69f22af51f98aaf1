"""/metrics with `bhuktani serve --workers N`: whichever worker a scrape reaches, it shows
every worker's counts (prometheus_client's multiprocess mode, in a directory of the run),
so a counter never jumps back and forth between workers' values; a worker that dies takes
its gauges with it but not its counts. Over real sockets, each request on a connection of
its own, so that the kernel spreads them over the workers."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from prometheus_client.multiprocess import MultiProcessCollector

from bhuktani.metrics import MULTIPROC_ENV
from tests.api.test_serving import children, cmdline, wait_for
from tests.cli.test_commands import run_cli
from tests.deploy.scrape import pay, scrape, total
from tests.support import Server, running_server

PAYMENTS = 24
SCRAPES = 6
PAID = "bhuktani_payments_total"


def merchant_token(db_url: str) -> str:
    done = run_cli(db_url, "merchant", "create", "deploy", "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout.strip().splitlines()[-1])["test_token"])


def serving_workers(server: Server) -> list[int]:
    return [pid for pid in children(server.process.pid) if b"resource_tracker" not in cmdline(pid)]


def events(server: Server, name: str) -> list[dict[str, object]]:
    lines = [line for line in server.log().splitlines() if line.startswith("{")]
    return [e for e in map(json.loads, lines) if e.get("event") == name]


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def paid_by_each(directory: Path) -> dict[int, float]:
    """Each worker's own count of commit answers, from its file of the run's directory."""
    counts = {}
    for file in directory.glob("counter_*.db"):
        pid = int(file.stem.rsplit("_", 1)[1])
        found = MultiProcessCollector._read_metrics([str(file)])  # type: ignore[no-untyped-call]
        counts[pid] = sum(
            s.value
            for metric in found.values()
            for s in metric.samples
            if s.name == PAID and dict(s.labels).get("service") == "arrownet"
        )
    return counts


def assert_every_scrape_counts(server: Server, expected: int) -> None:
    seen = [
        total(scrape(server.base_url), PAID, env="test", service="arrownet") for _ in range(SCRAPES)
    ]
    assert seen == [expected] * SCRAPES, seen


def test_with_two_workers_every_scrape_counts_every_payment(
    own_db_url: str, tmp_path: Path
) -> None:
    token = merchant_token(own_db_url)
    with running_server(own_db_url, tmp_path / "serve.log", workers=2, reconciler=False) as server:
        wait_for(lambda: len(events(server, "worker_serving")) >= 2, "both workers serving")
        workers = serving_workers(server)
        directory = Path(environ_of(workers[0])[MULTIPROC_ENV])
        for _ in range(PAYMENTS):
            paid = pay(server.base_url, token)
            assert paid.json()["state"] == "Success", paid.text

        # Both workers took payments: one worker's count alone is not the total.
        by_worker = paid_by_each(directory)
        assert sorted(by_worker) == sorted(workers), (by_worker, workers)
        assert all(0 < n < PAYMENTS for n in by_worker.values()), by_worker
        assert_every_scrape_counts(server, PAYMENTS)

        samples = scrape(server.base_url)
        # A gauge shows once, not once per worker; nothing waits on an idle gateway.
        for name, labels in (
            ("bhuktani_payments_flagged", {"env": "test"}),
            ("bhuktani_reconcile_overdue", {}),
            ("bhuktani_callbacks", {"status": "expired"}),
            ("bhuktani_merchant_balances_low", {"env": "test"}),
        ):
            found = [
                s
                for s in samples
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
            ]
            assert [s.value for s in found] == [0.0], (name, found)
        assert all("pid" not in s.labels for s in samples), "a gauge shown per worker"
        waiting = [s for s in samples if s.name == "bhuktani_db_statements_waiting"]
        if own_db_url.startswith("postgresql"):
            assert [s.value for s in waiting] == [0.0], waiting

        # A worker killed: its replacement serves, the counts stay, its gauges go.
        dead = workers[0]
        os.kill(dead, signal.SIGKILL)
        wait_for(lambda: len(events(server, "worker_serving")) >= 3, "a replacement serving")
        assert_every_scrape_counts(server, PAYMENTS)
        assert not list(directory.glob(f"gauge_live*_{dead}.db"))
        assert list(directory.glob(f"counter_{dead}.db"))
        for _ in range(2):
            assert pay(server.base_url, token).json()["state"] == "Success"
        assert_every_scrape_counts(server, PAYMENTS + 2)

    # A directory of the run, gone with it: the next run counts from zero.
    assert not directory.exists()


def test_one_worker_keeps_its_metrics_in_memory(own_db_url: str, tmp_path: Path) -> None:
    token = merchant_token(own_db_url)
    with running_server(own_db_url, tmp_path / "serve.log", workers=1, reconciler=False) as server:
        assert MULTIPROC_ENV not in environ_of(server.process.pid)
        for _ in range(3):
            assert pay(server.base_url, token).json()["state"] == "Success"
        assert_every_scrape_counts(server, 3)
