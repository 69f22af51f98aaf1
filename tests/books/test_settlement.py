"""Settlement with each ISP: `bhuktani settle` run as the operator runs it, against isp-sim
over real sockets after real LIVE payments through it, and the worker's morning loop.

The test database is shared by the session, so each test's payments are put on a day of
their own: isp-sim's clock dates what it applies, and our payments' creation times are
set to the same moments (the commit makes them a few milliseconds before the ISP applies
them, as here)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest

from bhuktani import runtime
from bhuktani.books import settlement
from bhuktani.clock import DAY_MS, day_start_ms
from bhuktani.isps.adapter import IspHttpProvider
from bhuktani.sandbox import isp_sim
from bhuktani.services import arrownet, hashcnet_v2
from bhuktani.store import Database
from tests.conftest import AppClient
from tests.support import (
    METRICS_AUTH,
    assert_books_balance,
    eventually,
    fast_settings,
    new_merchant,
)

GROUP = hashcnet_v2.SLUG
ISP = "vns"
SIM_KEY = "settle-sim-key-0123456789"
HOUR_MS = 3_600_000
# What the commit below pays: vns's FTTH-50Mbps for a month.
AMOUNT_PAISA = 99_900
_DAYS = itertools.count()


def fresh_day(first: date = date(2001, 1, 1)) -> date:
    """A day no other test of the session pays on, with quiet days around it."""
    return first + timedelta(days=5 * next(_DAYS))


@dataclass
class LiveIsp:
    """isp-sim serving the group's LIVE ISPs; `at_ms` is its clock."""

    base_url: str
    simulator: isp_sim.IspSimulator
    at_ms: int = 0

    def provider(self) -> IspHttpProvider:
        return IspHttpProvider(
            group=GROUP,
            base_url=self.base_url,
            api_key=SIM_KEY,
            connect_timeout_s=1.0,
            timeout_s=2.0,
            max_connections=4,
            settle_window_s=120.0,
        )


@asynccontextmanager
async def live_isp(client: AppClient) -> AsyncIterator[LiveIsp]:
    live = LiveIsp("", isp_sim.IspSimulator())
    server, simulator = await isp_sim.start(
        "127.0.0.1", 0, api_key=SIM_KEY, clock=lambda: live.at_ms
    )
    live.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    live.simulator = simulator
    provider = live.provider()
    client.gateway.live[GROUP] = provider
    try:
        yield live
    finally:
        del client.gateway.live[GROUP]
        await provider.aclose()
        await isp_sim.stop(server, simulator)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def pay(
    client: AppClient, token: str, at_ms: int, live: LiveIsp | None, username: str = "jeetenaug4"
) -> tuple[int, str]:
    """A payment the ISP (isp-sim, or the TEST sandbox) decides at `at_ms`, created by us
    50 ms before; its id and state."""
    if live is not None:
        live.at_ms = at_ms
    reference = unique("settle")
    details = await client.post(
        f"/api/servicegroup/details/{GROUP}/",
        json={"token": token, "reference": unique("d"), "username": username, "service_slug": ISP},
    )
    assert details.status_code == 200, details.text
    await client.post(
        f"/api/servicegroup/commit/{GROUP}/",
        json={
            "token": token,
            "reference": reference,
            "session_id": details.json()["session_id"],
            "package_code": 9,
            "duration_code": "1",
            "amount": 999,
        },
    )
    db = client.gateway.db
    row = await db.read(
        lambda tx: tx.fetchrow("SELECT id, state FROM payments WHERE reference = $1", reference)
    )
    assert row is not None
    payment_id = int(row["id"])
    await edit(db, "UPDATE payments SET created_ms = $1 WHERE id = $2", at_ms - 50, payment_id)
    if live is None:
        await edit(
            db,
            "UPDATE sandbox_payments SET created_ms = $1 WHERE payment_id = $2",
            at_ms,
            payment_id,
        )
    return payment_id, str(row["state"])


async def edit(db: Database, sql: str, *args: Any) -> None:
    """Our copy of a payment changed behind the books' back: what a mismatch looks like."""
    await db.run(lambda tx: tx.execute(sql, *args))


def settle_env(db_url: str, base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BHUKTANI_")}
    env["BHUKTANI_DATABASE_URL"] = db_url
    env["BHUKTANI_ISPS__HASHCNET_V2__BASE_URL"] = base_url
    env["BHUKTANI_ISPS__HASHCNET_V2__API_KEY"] = SIM_KEY
    return env


async def settle(db_url: str, base_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`bhuktani settle ...` in a process of its own; in a thread, so that isp-sim and the
    app in this process keep answering."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bhuktani", "settle", *args, "--operator", "settle-test"],
        env=settle_env(db_url, base_url),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def settled_json(db_url: str, base_url: str, *args: str, code: int) -> dict[str, Any]:
    done = await settle(db_url, base_url, *args, "--json")
    assert done.returncode == code, f"{done.returncode}\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def stored(db: Database, settlement_id: int) -> dict[str, Any]:
    row = await db.read(
        lambda tx: tx.fetchrow("SELECT * FROM settlements WHERE id = $1", settlement_id)
    )
    assert row is not None
    return dict(row)


async def audit_of(db: Database, subject: str) -> list[dict[str, Any]]:
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT operator, env, details_json FROM audit_log"
            " WHERE action = 'settle.mismatch' AND subject = $1",
            subject,
        )
    )
    return [
        {"operator": r["operator"], "env": r["env"], "details": json.loads(r["details_json"])}
        for r in rows
    ]


# bhuktani settle


async def test_settle_is_clean_after_live_payments_through_isp_sim(
    client: AppClient, db_url: str
) -> None:
    day = fresh_day()
    start = day_start_ms(day)
    merchant = await new_merchant(client.gateway.db, live_rupees=10_000)
    async with live_isp(client) as live:
        paid = [
            await pay(client, merchant.live_token, start + hours * HOUR_MS, live)
            for hours in (1, 9, 23)
        ]
        assert [state for _, state in paid] == ["Success"] * 3
        result = await settled_json(db_url, live.base_url, ISP, "--date", day.isoformat(), code=0)
        shown = await settle(db_url, live.base_url, ISP, "--date", day.isoformat())
    assert result["clean"] is True and result["mismatches"] == 0
    assert result["reported"] == {"count": 3, "total_paisa": 3 * AMOUNT_PAISA}
    assert result["matched"] == {"count": 3, "total_paisa": 3 * AMOUNT_PAISA}
    assert result["counts"] == {
        "matched": 3,
        "ours_only": 0,
        "theirs_only": 0,
        "amount_mismatches": 0,
    }
    row = await stored(client.gateway.db, result["id"])
    assert (row["env"], row["isp"], row["day"]) == ("live", ISP, day.isoformat())
    assert (row["matched_count"], row["matched_paisa"]) == (3, 3 * AMOUNT_PAISA)
    assert (row["ours_only"], row["theirs_only"], row["amount_mismatches"]) == (0, 0, 0)
    assert json.loads(row["report_json"])["ours_only"] == []
    assert shown.returncode == 0, shown.stderr
    assert "matched" in shown.stdout and "clean" in shown.stdout
    assert await audit_of(client.gateway.db, f"{ISP} {day.isoformat()}") == []
    await assert_books_balance(client.gateway.db)


async def test_each_kind_of_mismatch_is_found_and_counted(client: AppClient, db_url: str) -> None:
    """Success here that the ISP never applied (a refused payment we show as Success),
    applied there but Failed here (owed to the ISP, charged to no merchant), and an amount
    that differs: each found, listed and counted; exit 2, and audited."""
    day = fresh_day()
    start = day_start_ms(day)
    db = client.gateway.db
    merchant = await new_merchant(db, live_rupees=10_000)
    async with live_isp(client) as live:
        clean, _ = await pay(client, merchant.live_token, start + HOUR_MS, live)
        ours_only, state = await pay(
            client, merchant.live_token, start + 2 * HOUR_MS, live, username="refuse-user"
        )
        assert state == "Failed"
        theirs_only, _ = await pay(client, merchant.live_token, start + 3 * HOUR_MS, live)
        differs, _ = await pay(client, merchant.live_token, start + 4 * HOUR_MS, live)
        await edit(db, "UPDATE payments SET state = 'Success' WHERE id = $1", ours_only)
        await edit(db, "UPDATE payments SET state = 'Failed' WHERE id = $1", theirs_only)
        await edit(db, "UPDATE payments SET amount_paisa = 100000 WHERE id = $1", differs)
        result = await settled_json(db_url, live.base_url, ISP, "--date", day.isoformat(), code=2)
        shown = await settle(db_url, live.base_url, ISP, "--date", day.isoformat())
    assert result["clean"] is False and result["mismatches"] == 3
    assert result["counts"] == {
        "matched": 1,
        "ours_only": 1,
        "theirs_only": 1,
        "amount_mismatches": 1,
    }
    assert result["matched"] == {"count": 1, "total_paisa": AMOUNT_PAISA}
    assert result["reported"] == {"count": 3, "total_paisa": 3 * AMOUNT_PAISA}
    assert [(p["payment_id"], p["amount_paisa"]) for p in result["ours_only"]] == [
        (ours_only, AMOUNT_PAISA)
    ]
    assert [
        (p["payment_id"], p["ours_state"], p["merchant_id"]) for p in result["theirs_only"]
    ] == [(theirs_only, "Failed", merchant.merchant_id)]
    assert [
        (p["payment_id"], p["ours_paisa"], p["theirs_paisa"]) for p in result["amount_mismatches"]
    ] == [(differs, 100_000, AMOUNT_PAISA)]
    assert clean not in {ours_only, theirs_only, differs}
    row = await stored(db, result["id"])
    assert (row["matched_count"], row["ours_only"], row["theirs_only"]) == (1, 1, 1)
    assert row["amount_mismatches"] == 1
    assert json.loads(row["report_json"])["theirs_only"] == result["theirs_only"]
    audited = await audit_of(db, f"{ISP} {day.isoformat()}")
    assert len(audited) == 2  # one for each of the two runs
    assert audited[0]["operator"] == "settle-test" and audited[0]["env"] == "live"
    assert {k: v for k, v in audited[0]["details"].items() if k != "settlement_id"} == {
        "matched": 1,
        "ours_only": 1,
        "theirs_only": 1,
        "amount_mismatches": 1,
    }
    assert shown.returncode == 2
    assert "ours only" in shown.stdout and "3 mismatches" in shown.stdout


async def test_a_payment_applied_across_midnight_is_matched_on_the_isps_day(
    client: AppClient, db_url: str
) -> None:
    """Created here at 23:59:59.850, applied there at 00:00:00.300 the next day: neither
    day's run calls it a mismatch, and it is matched once, in the run of the ISP's day."""
    day = fresh_day()
    next_day = day + timedelta(days=1)
    merchant = await new_merchant(client.gateway.db, live_rupees=10_000)
    async with live_isp(client) as live:
        payment_id, _ = await pay(client, merchant.live_token, day_start_ms(next_day) + 300, live)
        await edit(
            client.gateway.db,
            "UPDATE payments SET created_ms = $1 WHERE id = $2",
            day_start_ms(next_day) - 150,
            payment_id,
        )
        ours = await settled_json(db_url, live.base_url, ISP, "--date", day.isoformat(), code=0)
        theirs = await settled_json(
            db_url, live.base_url, ISP, "--date", next_day.isoformat(), code=0
        )
    across = [
        {
            "payment_id": payment_id,
            "merchant_id": merchant.merchant_id,
            "reference": ours["across_midnight"][0]["reference"],
            "our_day": day.isoformat(),
            "isp_day": next_day.isoformat(),
        }
    ]
    assert ours["matched"]["count"] == 0 and ours["across_midnight"] == across
    assert theirs["matched"] == {"count": 1, "total_paisa": AMOUNT_PAISA}
    assert theirs["across_midnight"] == across


async def test_a_test_settle_compares_every_merchants_test_payments(
    client: AppClient, db_url: str
) -> None:
    day = fresh_day()
    start = day_start_ms(day)
    db = client.gateway.db
    first, second = await new_merchant(db), await new_merchant(db)
    mine, _ = await pay(client, first.test_token, start + HOUR_MS, None)
    await pay(client, second.test_token, start + 2 * HOUR_MS, None)
    unused = "http://127.0.0.1:9"
    args = (ISP, "--date", day.isoformat(), "--env", "test")
    result = await settled_json(db_url, unused, *args, code=0)
    assert result["env"] == "test"
    assert result["matched"] == {"count": 2, "total_paisa": 2 * AMOUNT_PAISA}
    await edit(db, "UPDATE payments SET state = 'Failed' WHERE id = $1", mine)
    again = await settled_json(db_url, unused, *args, code=2)
    assert [(p["payment_id"], p["ours_state"]) for p in again["theirs_only"]] == [(mine, "Failed")]


async def test_settle_of_an_isp_that_does_not_answer_exits_1_and_stores_nothing(
    client: AppClient, db_url: str
) -> None:
    day = fresh_day()
    async with live_isp(client) as live:
        gone = live.base_url
    done = await settle(db_url, gone, ISP, "--date", day.isoformat())
    assert done.returncode == 1
    assert "could not connect" in done.stderr and "Traceback" not in done.stderr
    rows = await client.gateway.db.read(
        lambda tx: tx.fetch("SELECT id FROM settlements WHERE day = $1", day.isoformat())
    )
    assert rows == []


@pytest.mark.parametrize(
    "args, why",
    [
        (("nowhere", "--date", "2026-12-06"), "'nowhere' is no ISP of ours"),
        ((ISP, "--date", "2026-02-30"), "--date must be a day"),
        ((ISP, "--date", "6 Dec"), "--date must be a day"),
        ((ISP, "--date", "2026-12-06", "--env", "prod"), "--env must be live or test"),
        (("arrownet", "--date", "2026-12-06"), "no ISP system for arrownet"),
    ],
)
async def test_settle_refuses_what_it_cannot_compare_with_exit_1(
    db_url: str, args: tuple[str, ...], why: str
) -> None:
    done = await settle(db_url, "http://127.0.0.1:9", *args)
    assert done.returncode == 1
    assert why in done.stderr and "Traceback" not in done.stderr


# The worker's morning run


def morning_after(day: date, minute: int = 1) -> Callable[[], int]:
    """A clock at 06:00 + `minute` Nepal time on the day after."""
    return lambda: day_start_ms(day) + DAY_MS + (6 * 60 + minute) * 60_000


async def test_the_worker_settles_each_isp_once_a_day_with_two_loops(
    client: AppClient, db_url: str
) -> None:
    """Two workers' loops at once, the morning after: every ISP of the LIVE group settled
    once for the day, the mismatch audited once (operator "worker"), and on /metrics."""
    # The latest day settled of the session, so that /metrics shows this run for vns.
    day = fresh_day(date(2090, 1, 1))
    start = day_start_ms(day)
    db = client.gateway.db
    merchant = await new_merchant(db, live_rupees=10_000)
    async with live_isp(client) as live:
        await pay(client, merchant.live_token, start + HOUR_MS, live)
        differs, _ = await pay(client, merchant.live_token, start + 2 * HOUR_MS, live)
        await edit(db, "UPDATE payments SET amount_paisa = 99800 WHERE id = $1", differs)
        workers = [await runtime.start(fast_settings(db_url)) for _ in range(2)]
        for worker in workers:
            worker.live = {GROUP: live.provider()}
        stop = asyncio.Event()
        loops = [
            asyncio.create_task(settlement.run(worker, stop, clock=morning_after(day)))
            for worker in workers
        ]

        async def all_settled() -> bool:
            return await settled_isps(db, day) == set(hashcnet_v2.GROUP.isps)

        try:
            await eventually(all_settled, timeout_s=20)
            await asyncio.sleep(0.3)  # the slower loop's last writes, had it made any
        finally:
            stop.set()
            await asyncio.gather(*loops)
            for worker in workers:
                await worker.aclose()
    runs = await db.read(
        lambda tx: tx.fetch(
            "SELECT isp, matched_count, amount_mismatches FROM settlements"
            " WHERE env = 'live' AND day = $1",
            day.isoformat(),
        )
    )
    assert sorted(str(r["isp"]) for r in runs) == sorted(hashcnet_v2.GROUP.isps)
    vns = [r for r in runs if r["isp"] == ISP]
    assert [(r["matched_count"], r["amount_mismatches"]) for r in vns] == [(1, 1)]
    audited = await audit_of(db, f"{ISP} {day.isoformat()}")
    assert [(a["operator"], a["details"]["amount_mismatches"]) for a in audited] == [("worker", 1)]
    assert await audit_of(db, f"hons {day.isoformat()}") == []
    scrape = await client.get("/metrics", headers=METRICS_AUTH)
    assert scrape.status_code == 200
    assert 'bhuktani_settlement_mismatches{isp="vns"} 1.0' in scrape.text
    assert (await settlement.last_mismatches(db))[ISP] == 1


async def settled_isps(db: Database, day: date) -> set[str]:
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT isp FROM settlements WHERE env = 'live' AND day = $1", day.isoformat()
        )
    )
    return {str(r["isp"]) for r in rows}


async def test_the_worker_tries_an_unreachable_isp_again_that_morning(
    client: AppClient, db_url: str
) -> None:
    day = fresh_day()
    worker = runtime.build(client.gateway.db, fast_settings(db_url))
    async with live_isp(client) as live:
        reachable = live.provider()
        unreachable = IspHttpProvider(
            arrownet.SLUG, "http://127.0.0.1:9", SIM_KEY, 0.5, 0.5, 1, 120.0
        )
        worker.live = {arrownet.SLUG: unreachable}
        tries: dict[str, int] = {}
        today = day + timedelta(days=1)
        assert await settlement.settle_day(worker, day, tries, today=today) is True
        assert tries == {"arrownet": 1}
        assert await settled_isps(client.gateway.db, day) == set()
        # The ISP answers again (isp-sim serves every group's ISPs): settled at the next try.
        worker.live = {
            arrownet.SLUG: IspHttpProvider(
                arrownet.SLUG, live.base_url, SIM_KEY, 1.0, 2.0, 1, 120.0
            )
        }
        assert await settlement.settle_day(worker, day, tries, today=today) is False
        assert await settled_isps(client.gateway.db, day) == {"arrownet"}
        # Settled is settled: no second run of the day.
        assert await settlement.settle_day(worker, day, tries, today=today) is False
        rows = await client.gateway.db.read(
            lambda tx: tx.fetch("SELECT id FROM settlements WHERE day = $1", day.isoformat())
        )
        assert len(rows) == 1
        for provider in (reachable, unreachable, worker.live[arrownet.SLUG]):
            await provider.aclose()


async def test_the_worker_gives_up_after_the_mornings_tries(client: AppClient, db_url: str) -> None:
    day = fresh_day()
    worker = runtime.build(client.gateway.db, fast_settings(db_url))
    unreachable = IspHttpProvider(arrownet.SLUG, "http://127.0.0.1:9", SIM_KEY, 0.5, 0.5, 1, 120.0)
    worker.live = {arrownet.SLUG: unreachable}
    tries = {"arrownet": settlement.MAX_TRIES - 1}
    assert await settlement.settle_day(worker, day, tries, today=day) is False
    assert tries == {"arrownet": settlement.MAX_TRIES}
    assert await settlement.settle_day(worker, day, tries, today=day) is False
    assert tries == {"arrownet": settlement.MAX_TRIES}, "not asked again"
    await unreachable.aclose()


def test_the_day_due_is_the_day_before_once_the_settling_time_has_come() -> None:
    morning = day_start_ms(date(2026, 12, 7)) + 6 * HOUR_MS
    assert settlement.due_day(morning - 1, "06:00") == date(2026, 12, 5)
    assert settlement.due_day(morning, "06:00") == date(2026, 12, 6)
    assert settlement.due_day(morning + 17 * HOUR_MS, "06:00") == date(2026, 12, 6)
    assert settlement.seconds_to_next(morning - 60_000, "06:00") == 60.0
    assert settlement.seconds_to_next(morning, "06:00") == 86_400.0
    assert settlement.seconds_to_next(morning, "05:30") == 86_400.0 - 1_800.0
