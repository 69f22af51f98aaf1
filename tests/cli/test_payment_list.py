"""`bhuktani payment list`: every merchant's payments, newest first, filtered, a page at a
time; a page names the command of the next, and no payment is shown twice or skipped."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys

from bhuktani.clock import nepal_time, wall_time
from bhuktani.payments import listing
from bhuktani.store import Database
from tests.cli.test_commands import bhuktani, cli_env
from tests.payments.test_operator import flagged, open_held, succeeded
from tests.support import new_merchant

MORE = re.compile(r"^more: (.+)$", re.MULTILINE)


async def ok(db_url: str, *args: str) -> str:
    """The command's stdout, in a terminal wide enough that no cell folds."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bhuktani", *args],
            env={**cli_env(db_url), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = await asyncio.to_thread(run)
    assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def table_ids(out: str) -> list[int]:
    """The payment ids of a table's rows, in order."""
    return [int(m) for m in re.findall(r"^ ?(\d+) {2,}\d", out, flags=re.MULTILINE)]


async def payments_of(db: Database, count: int) -> tuple[int, list[int]]:
    """A new merchant's payments, and their ids newest first (ids are random: those made
    in one millisecond go by id)."""
    merchant = await new_merchant(db)
    for _ in range(count):
        await open_held(db, merchant.merchant_id)
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT id FROM payments WHERE merchant_id = $1 ORDER BY created_ms DESC, id DESC",
            merchant.merchant_id,
        )
    )
    return merchant.merchant_id, [int(row["id"]) for row in rows]


async def test_the_json_list_is_one_object_of_payments_and_the_next_cursor(
    db_url: str, db: Database
) -> None:
    merchant_id, ids = await payments_of(db, 2)
    done = await bhuktani(db_url, "payment", "list", "--merchant", str(merchant_id), "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert set(listed) == {"payments", "next_cursor"}
    assert listed["next_cursor"] is None
    assert [p["id"] for p in listed["payments"]] == ids, "newest first"
    first = listed["payments"][0]
    assert set(first) == {
        "id", "merchant_id", "env", "reference", "service", "isp", "username", "amount",
        "amount_paisa", "charge_paisa", "state", "isp_status", "flagged", "flag_reason",
        "created_at", "updated_at",
    }  # fmt: skip
    assert (first["amount"], first["amount_paisa"], first["state"]) == (
        "1695.00",
        169_500,
        "Processing",
    )
    assert first["created_at"].endswith("+05:45")


async def test_paging_by_the_printed_command_reaches_every_payment_once(
    db_url: str, db: Database
) -> None:
    merchant_id, ids = await payments_of(db, 7)
    seen: list[int] = []
    args = ["payment", "list", "--merchant", str(merchant_id), "--limit", "3"]
    for _ in range(5):
        out = await ok(db_url, *args)
        seen += table_ids(out)
        more = MORE.search(out)
        if more is None:
            break
        words = shlex.split(more[1])
        assert words[:3] == ["bhuktani", "payment", "list"], words
        args = words[1:]
    assert seen == ids, "every payment once, newest first"


async def test_json_pages_follow_next_cursor_and_all_gives_them_at_once(
    db_url: str, db: Database
) -> None:
    merchant_id, ids = await payments_of(db, 5)
    mine = ("payment", "list", "--merchant", str(merchant_id), "--json", "--limit", "2")
    seen: list[int] = []
    cursor: list[str] = []
    for _ in range(4):
        page = json.loads(await ok(db_url, *mine, *cursor))
        seen += [p["id"] for p in page["payments"]]
        if page["next_cursor"] is None:
            break
        cursor = ["--cursor", page["next_cursor"]]
    every = json.loads(await ok(db_url, *mine, "--all"))
    assert seen == ids
    assert [p["id"] for p in every["payments"]] == ids
    assert every["next_cursor"] is None
    table = await ok(db_url, *[a for a in mine if a != "--json"], "--all")
    assert table_ids(table) == ids and "more:" not in table


async def test_filters_flagged_state_service_env_and_time(db_url: str, db: Database) -> None:
    merchant = await new_merchant(db)
    mid = merchant.merchant_id
    held = await open_held(db, mid)
    waiting = await flagged(db, mid)
    paid = await succeeded(db, mid)

    async def ids(*args: str) -> set[int]:
        out = await ok(db_url, "payment", "list", "--merchant", str(mid), "--json", *args)
        return {p["id"] for p in json.loads(out)["payments"]}

    (
        flagged_only, success, processing, by_isp, live, since_later, until_earlier
    ) = await asyncio.gather(
        ids("--flagged"),
        ids("--state", "success"),
        ids("--state", "Processing"),
        ids("--service", "arrownet"),
        ids("--env", "live"),
        ids("--since", "2999-01-01"),
        ids("--until", "2000-01-01T00:00"),
    )  # fmt: skip
    every = {paid.payment_id, waiting.payment_id, held.payment_id}
    assert flagged_only == {waiting.payment_id}
    assert success == {paid.payment_id}
    assert processing == {waiting.payment_id, held.payment_id}
    assert by_isp == every
    assert live == set() and since_later == set() and until_earlier == set()
    # A day of --since and --until takes in the whole Nepal day of the payments.
    [row] = json.loads(await ok(db_url, "payment", "list", "--merchant", str(mid), "--json",
                                "--flagged"))["payments"]  # fmt: skip
    today = row["created_at"][:10]
    assert await ids("--since", today, "--until", today) == every


async def test_the_table_shows_rupees_right_aligned_and_times_in_npt_or_utc(
    db_url: str, db: Database
) -> None:
    merchant_id, [payment_id] = await payments_of(db, 1)
    [row] = json.loads(
        await ok(db_url, "payment", "list", "--merchant", str(merchant_id), "--json")
    )["payments"]
    created_ms = listing_ms(row["created_at"])
    npt, utc = await asyncio.gather(
        ok(db_url, "payment", "list", "--merchant", str(merchant_id)),
        ok(db_url, "payment", "list", "--merchant", str(merchant_id), "--utc"),
    )
    assert "created (NPT)" in npt and "created (UTC)" not in npt
    assert "created (UTC)" in utc
    assert wall_time(created_ms) in npt
    assert wall_time(created_ms, utc=True) in utc
    assert wall_time(created_ms) != wall_time(created_ms, utc=True)
    header = next(line for line in npt.splitlines() if "amount (Rs)" in line)
    line = next(line for line in npt.splitlines() if re.match(rf" ?{payment_id}\s", line))
    # The amount ends where its header ends: right-aligned, with its thousands separated.
    end = header.index("amount (Rs)") + len("amount (Rs)")
    assert line[:end].endswith("1,695.00"), (header, line)


def listing_ms(iso: str) -> int:
    from bhuktani.clock import ms_of

    at_ms = ms_of(iso)
    assert nepal_time(at_ms) == iso
    return at_ms


async def test_bad_filters_and_cursors_are_refused_as_usage_errors(db_url: str) -> None:
    runs = await asyncio.gather(
        *(
            bhuktani(db_url, "payment", "list", *args)
            for args in (
                ("--env", "staging"),
                ("--state", "Paid"),
                ("--service", "no-such-isp"),
                ("--since", "yesterday"),
                ("--cursor", "not-a-cursor"),
                ("--limit", str(listing.MAX_LIMIT + 1)),
            )
        )
    )
    for done, option in zip(
        runs, ("--env", "--state", "--service", "--since", "--cursor", "--limit"), strict=True
    ):
        assert done.returncode == 2, (option, done.stdout, done.stderr)
        assert option in done.stderr and "Traceback" not in done.stderr, done.stderr
