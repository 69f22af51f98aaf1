"""The bank test under faults (tests/bank/__init__.py says what runs and what is checked).

LIVE payments go over HTTP to an `isp-sim` with seeded faults; their callbacks are
checked in the outbox (LIVE callbacks to loopback are refused by design). TEST payments
use the in-process sandbox's scenario users; their callbacks reach a local receiver and
are verified with the standardwebhooks library. The gateway is SIGKILLed and restarted during the run.

The short run is part of `make test`, on SQLite and on PostgreSQL. The long one is
`make soak` (BHUKTANI_SOAK=1; BHUKTANI_SOAK_PAYMENTS scales it). BHUKTANI_BANK_SEED replays
a run's plan and faults; every failure prints its seed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.bank import Report, run_bank

SOAK = os.environ.get("BHUKTANI_SOAK") == "1"


def _seed() -> int:
    given = os.environ.get("BHUKTANI_BANK_SEED")
    return int(given) if given else random.randrange(1_000_000_000)


def _verdict(report: Report, min_kills: int) -> None:
    print(report.summary())
    if report.kills < min_kills:
        pytest.fail(f"only {report.kills} kills\n{report.failure()}", pytrace=False)
    if report.problems:
        pytest.fail(report.failure(), pytrace=False)


async def test_books_balance_under_faults_and_kills(own_db_url: str, tmp_path: Path) -> None:
    report = await run_bank(
        own_db_url,
        seed=_seed(),
        payments=400,
        clients=16,
        merchants=4,
        kills=5,
        duration_bound_s=90,
        workdir=tmp_path,
    )
    _verdict(report, min_kills=5)


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="the soak runs with BHUKTANI_SOAK=1 (make soak)")
async def test_soak_books_balance_under_faults_and_kills(own_db_url: str, tmp_path: Path) -> None:
    payments = int(os.environ.get("BHUKTANI_SOAK_PAYMENTS", "3000"))
    report = await run_bank(
        own_db_url,
        seed=_seed(),
        payments=payments,
        clients=48,
        merchants=8,
        kills=max(10, payments // 200),
        duration_bound_s=max(300.0, payments * 0.3),
        workdir=tmp_path,
    )
    _verdict(report, min_kills=10)
