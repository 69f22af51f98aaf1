"""What every command prints, alike: `--json` one document on stdout and nothing else,
`--env` a choice defaulting to TEST, rupees with thousands separated and right-aligned,
times in Nepal labelled (or UTC with --utc), and `bhuktani --version`."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime

import pytest
from rich.console import Console
from rich.table import Table

import bhuktani
from bhuktani.cli.display import Times, add_amount_column, paisa_of, rupees
from bhuktani.clock import ms_of, nepal_time, wall_time
from bhuktani.store import Database
from bhuktani.web.pages import rupees as dashboard_rupees
from tests.books.test_credit_requests import ask_directly
from tests.cli.test_commands import (
    MISSING_MERCHANT_ID,
    TEST_TOKEN,
    create_merchant,
    ok,
    refused_cleanly,
)
from tests.cli.test_commands import (
    bhuktani as run,
)
from tests.payments.test_operator import flagged, new_reference, succeeded
from tests.support import new_merchant

# 18:15 UTC on New Year's Eve is midnight, New Year's Day, in Nepal.
NEW_YEAR_MS = int(datetime(2025, 12, 31, 18, 15, tzinfo=UTC).timestamp() * 1000)


def test_version_prints_the_package_version() -> None:
    from tests.cli.test_commands import run_cli

    done = run_cli(None, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"bhuktani {bhuktani.__version__}\n"


# Amounts and times, as every table shows them.


@pytest.mark.parametrize(
    "paisa, shown",
    [(0, "0.00"), (5, "0.05"), (169_500, "1,695.00"), (10_000_000, "100,000.00"),
     (-123_456_789, "-1,234,567.89"), (None, "-")],
)  # fmt: skip
def test_rupees_group_thousands_as_the_dashboard_does(paisa: int | None, shown: str) -> None:
    assert rupees(paisa) == shown
    if paisa is not None:
        assert rupees(paisa) == dashboard_rupees(paisa)


def test_a_views_rupees_are_read_back_to_exact_paisa() -> None:
    assert [paisa_of(v) for v in (1695.0, "1695.00", 0.1, "12345.67", None)] == [
        169_500, 169_500, 10, 1_234_567, None
    ]  # fmt: skip


def test_amount_columns_are_right_aligned() -> None:
    table = Table("id")
    add_amount_column(table, "amount (Rs)")
    table.add_row("1", rupees(500))
    table.add_row("2", rupees(1_234_567))
    console = Console(width=80, file=None, record=True)
    with console.capture() as captured:
        console.print(table)
    lines = [line for line in captured.get().splitlines() if "5.00" in line or "67" in line]
    assert len(lines) == 2
    assert lines[0].index("5.00") + len("5.00") == lines[1].index("12,345.67") + len("12,345.67")


def test_times_are_nepal_time_labelled_npt_or_utc_labelled_utc() -> None:
    npt, utc = Times(), Times(utc=True)
    assert npt.header("created") == "created (NPT)"
    assert utc.header("created") == "created (UTC)"
    assert npt.cell(NEW_YEAR_MS) == "2026-01-01 00:00:00"
    assert utc.cell(NEW_YEAR_MS) == "2025-12-31 18:15:00"
    # A view's ISO text, whatever its offset, names the same instant.
    for text in (nepal_time(NEW_YEAR_MS), "2025-12-31T18:15:00+00:00", "2025-12-31T18:15:00Z"):
        assert ms_of(text) == NEW_YEAR_MS
        assert npt.cell(text) == "2026-01-01 00:00:00"
    assert npt.labelled(NEW_YEAR_MS) == "2026-01-01 00:00:00 NPT"
    assert utc.labelled(NEW_YEAR_MS) == "2025-12-31 18:15:00 UTC"
    assert npt.cell(None) == "-"
    assert wall_time(NEW_YEAR_MS + 250) == "2026-01-01 00:00:00"


# --env: one choice, one default.

ENV_TAKERS = (
    ("token", "create", MISSING_MERCHANT_ID),
    ("credits", "load", MISSING_MERCHANT_ID, "5"),
    ("credits", "requests"),
    ("charges", "set", MISSING_MERCHANT_ID, "arrownet", "--flat", "1"),
    ("charges", "clear", MISSING_MERCHANT_ID, "arrownet"),
    ("statement", MISSING_MERCHANT_ID, "--date", "2026-01-01"),
    ("merchant", "set-low-balance", MISSING_MERCHANT_ID, "--below", "5"),
    ("merchant", "set-callback", MISSING_MERCHANT_ID, "none"),
    ("merchant", "rotate-secret", MISSING_MERCHANT_ID),
    ("payment", "list"),
    ("payment", "show", "ref"),
    ("payment", "resolve", "ref", "--success", "--note", "n"),
    ("payment", "refund", "ref", "--note", "n"),
)


async def test_every_env_option_refuses_free_text_as_a_usage_error(db_url: str) -> None:
    runs = await asyncio.gather(*(run(db_url, *args, "--env", "staging") for args in ENV_TAKERS))
    for args, done in zip(ENV_TAKERS, runs, strict=True):
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "--env" in done.stderr and "'staging' is not one of" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


async def test_env_defaults_to_test_and_takes_any_case(db_url: str, db: Database) -> None:
    merchant = await new_merchant(db, test_rupees=5, live_rupees=0)
    mid = str(merchant.merchant_id)
    token = json.loads(await ok(db_url, "token", "create", mid, "--json"))
    loaded = json.loads(await ok(db_url, "credits", "load", mid, "10", "--json"))
    live = json.loads(await ok(db_url, "token", "create", mid, "--env", "LIVE", "--json"))
    assert token["env"] == "test" and TEST_TOKEN.match(token["token"]), token
    assert live["env"] == "live" and not live["token"].startswith("TEST:"), live
    assert (loaded["env"], loaded["available"]) == ("test", "15.00"), loaded


# --json: one document on stdout, its shape as below; messages on stderr.


async def test_json_of_merchant_list_and_token_create(db_url: str) -> None:
    created = await create_merchant(db_url, "--test-credits", "1234567.89")
    listed = json.loads(await ok(db_url, "merchant", "list", "--all", "--json"))
    assert set(listed) == {"merchants", "next_cursor"} and listed["next_cursor"] is None
    [mine] = [m for m in listed["merchants"] if m["id"] == created["merchant_id"]]
    assert mine == {
        "id": created["merchant_id"],
        "name": created["name"],
        "status": "active",
        "services": "all",
        "test_available": "1234567.89",
        "test_available_paisa": 123_456_789,
        "live_available": "0.00",
        "live_available_paisa": 0,
    }
    token = json.loads(await ok(db_url, "token", "create", str(created["merchant_id"]), "--json"))
    assert set(token) == {"merchant_id", "env", "token"}
    table = await ok(db_url, "merchant", "list", "--all")
    assert "1,234,567.89" in table and "(Rs)" in table


async def test_merchant_list_pages_reach_every_merchant_once(db_url: str, db: Database) -> None:
    for _ in range(3):
        await new_merchant(db)
    every = json.loads(await ok(db_url, "merchant", "list", "--all", "--json"))["merchants"]
    seen: list[int] = []
    cursor: list[str] = []
    for _ in range(len(every) + 1):
        page = json.loads(await ok(db_url, "merchant", "list", "--json", "--limit", "2", *cursor))
        seen += [m["id"] for m in page["merchants"]]
        if page["next_cursor"] is None:
            break
        cursor = ["--cursor", page["next_cursor"]]
    # Merchants are never removed: the walk sees what --all saw, and any made since.
    assert seen[: len(every)] == [m["id"] for m in every]
    assert len(seen) == len(set(seen))
    table = await ok(db_url, "merchant", "list", "--limit", "1")
    assert re.search(r"^more: bhuktani merchant list --limit 1 --cursor \S+$", table, re.M)


async def test_json_of_charges_set_and_clear(db_url: str, db: Database) -> None:
    merchant = await new_merchant(db)
    mid = str(merchant.merchant_id)
    set_ = json.loads(await ok(db_url, "charges", "set", mid, "arrownet", "--flat", "5", "--json"))
    cleared = json.loads(await ok(db_url, "charges", "clear", mid, "arrownet", "--json"))
    assert (set_["merchant_id"], set_["env"], set_["service"], set_["flat"]) == (
        merchant.merchant_id, "test", "arrownet", "5.00"
    )  # fmt: skip
    assert cleared == {
        "merchant_id": merchant.merchant_id,
        "env": "test",
        "service": "arrownet",
        "removed": {"flat": "5.00", "percent": None, "min": None, "max": None},
    }


async def test_json_of_payment_resolve_and_refund(db_url: str, db: Database) -> None:
    merchant = await new_merchant(db)
    held = await flagged(db, merchant.merchant_id)
    paid = await succeeded(db, merchant.merchant_id, new_reference())
    where = ("--merchant", str(merchant.merchant_id), "--operator", "ops")
    resolved = json.loads(
        await ok(db_url, "payment", "resolve", held.reference, "--failed", "--note", "n",
                 *where, "--json")
    )  # fmt: skip
    refunded = json.loads(
        await ok(db_url, "payment", "refund", paid.reference, "--amount", "95", "--note", "n",
                 *where, "--json")
    )  # fmt: skip
    assert set(resolved) == {"payment_id", "state", "transfer_id", "action_id"}
    assert (resolved["payment_id"], resolved["state"]) == (held.payment_id, "Failed")
    assert set(refunded) == {
        "payment_id", "amount_paisa", "refunded_paisa", "left_paisa", "transfer_id",
        "action_id", "charge_refunded_paisa",
    }  # fmt: skip
    assert (refunded["amount_paisa"], refunded["left_paisa"]) == (9_500, 160_000)


async def test_a_refusal_under_json_leaves_stdout_empty(db_url: str) -> None:
    for args in (
        ("token", "create", MISSING_MERCHANT_ID, "--json"),
        ("statement", MISSING_MERCHANT_ID, "--date", "2026-01-01", "--json"),
        ("payment", "show", new_reference()),
    ):
        done = await run(db_url, *args)
        assert refused_cleanly(done) and done.stdout == "", (args, done.stdout)
        assert done.stderr.strip(), args


async def test_credit_requests_page_with_the_more_line_on_stderr_under_json(
    db_url: str, db: Database
) -> None:
    merchant = await new_merchant(db)
    # Five at the same millisecond, as a burst of asks may be: the walk goes by id.
    ids = [
        await ask_directly(db, merchant.merchant_id, "test", 100 * (n + 1), NEW_YEAR_MS)
        for n in range(5)
    ]
    mine = ("credits", "requests", "--merchant", str(merchant.merchant_id), "--limit", "2")
    seen: list[int] = []
    args: list[str] = [*mine, "--json"]
    for _ in range(5):
        done = await run(db_url, *args)
        assert done.returncode == 0, done.stderr
        seen += [row["id"] for row in json.loads(done.stdout)]
        more = re.search(r"^more: bhuktani (.+)$", done.stderr, re.M)
        if more is None:
            break
        args = more[1].split()
    assert seen == ids, "oldest first, every request once"
    table = await ok(db_url, *mine)
    assert "requested (NPT)" in table and "more: bhuktani credits requests" in table
