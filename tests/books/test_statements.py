"""The merchant's day in the books: credits by date (Khalti's `balance_check.md`), the
daily statement (JSON and CSV), the worker's closings, and `bhuktani statement`; each over
a real socket or as the operator runs it, on both databases.

Entries are written through the ledger at chosen instants: the clock the ledger stamps
created_ms with is patched where it is used (`stamped`)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import httpx
import pytest

from bhuktani.api.statements import BAD_DATE, FUTURE_DATE
from bhuktani.books import statements
from bhuktani.books.statements import parse_day
from bhuktani.clock import DAY_MS, day_start_ms, nepal_day, nepal_time, now_ms
from bhuktani.domain import State
from bhuktani.ledger.book import Final, NewPayment, book_for
from bhuktani.merchants import service as merchants
from bhuktani.payments import operator
from bhuktani.payments.sessions import random_id
from bhuktani.store import Database
from tests.cli.test_commands import bhuktani, cli_env, ok
from tests.support import Server, assert_books_balance, eventually, new_merchant, running_server

CREDITS_BYDATE = "/api/credits/bydate/"
STATEMENT = "/api/statement/"
BALANCE = "/api/balance/"
HOUR_MS = 3_600_000
# Every module that stamps a transfer's or a payment's created_ms imports now_ms by name.
STAMPING = (
    "bhuktani.ledger.accounts",
    "bhuktani.ledger.book",
    "bhuktani.ledger.postgres",
    "bhuktani.payments.operator",
    "bhuktani.merchants.service",
)
STATEMENT_FIELDS = {
    "status",
    "date",
    "opening",
    "loads",
    "payments",
    "charges",
    "refunds",
    "closing",
    "entries",
}
ENTRY_FIELDS = {
    "time",
    "kind",
    "reference",
    "response_id",
    "amount",
    "charge",
    "balance",
    "note",
}


class Clock:
    """The instant the ledger stamps, set by the test."""

    def __init__(self, at_ms: int) -> None:
        self.at_ms = at_ms

    def __call__(self) -> int:
        return self.at_ms


@contextmanager
def stamped(clock: Clock) -> Iterator[None]:
    with ExitStack() as stack:
        for module in STAMPING:
            stack.enter_context(patch(f"{module}.now_ms", clock))
        yield


class Ledger:
    """One merchant's account in one environment, moved through the ledger's own
    functions at the clock's instants."""

    def __init__(self, db: Database, merchant_id: int, clock: Clock, env: str = "test") -> None:
        self.db = db
        self.book = book_for(db)
        self.merchant_id = merchant_id
        self.clock = clock
        self.env = env

    def at(self, ms: int) -> Ledger:
        self.clock.at_ms = ms
        return self

    async def load(self, amount_paisa: int, note: str = "credit load") -> None:
        with stamped(self.clock):
            await merchants.load_credits(self.db, self.merchant_id, self.env, amount_paisa, note)

    async def hold(
        self,
        amount_paisa: int,
        charge_paisa: int = 0,
        *,
        reference: str | None = None,
        service: str = "arrownet",
        isp: str = "arrownet",
    ) -> tuple[int, str]:
        """A payment's hold of amount + charge; returns its id and reference."""
        reference = reference or f"ref-{uuid.uuid4().hex[:10]}"
        payment = NewPayment(
            id=random_id(),
            merchant_id=self.merchant_id,
            env=self.env,
            reference=reference,
            service=service,
            isp=isp,
            username="Pradhanang",
            package_code=None,
            package_title="50Mbps",
            duration_code="1",
            days=30,
            amount_paisa=amount_paisa,
            session_id=None,
            # Never due: the test decides how it ends, not a reconciler.
            first_check_ms=self.clock.at_ms + 1000 * DAY_MS,
            charge_paisa=charge_paisa,
        )
        with stamped(self.clock):
            await self.book.open_hold(payment)
        return payment.id, reference

    async def finish(self, payment_id: int, state: State, *, charged: bool) -> None:
        final = (
            Final(State.SUCCESS, "Paid", "RCPT-1")
            if state is State.SUCCESS
            else Final(State.FAILED, "Refused", "No such plan")
        )
        with stamped(self.clock):
            done = await self.book.finalize(payment_id, final, charged=charged)
        assert done is not None

    async def refund(self, reference: str, amount_paisa: int | None, note: str) -> None:
        target = operator.Target(reference, self.merchant_id, self.env)
        with stamped(self.clock):
            await operator.refund(
                self.db, target, amount_paisa=amount_paisa, note=note, operator="tester"
            )


def at(day: date, hours: int = 0, minutes: int = 0, ms: int = 0) -> int:
    return day_start_ms(day) + hours * HOUR_MS + minutes * 60_000 + ms


@pytest.fixture
def clock() -> Clock:
    return Clock(0)


# Backdated entries are written while the server runs: its worker must not close those
# days half written (in production nothing is stamped that far back).
NO_CLOSING_S = str(30 * 86_400)


@pytest.fixture
def quiet_server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    """`bhuktani serve` whose worker closes no day of the last month."""
    with running_server(
        db_url, tmp_path / "server.log", BHUKTANI_DAY_CLOSE_AFTER_S=NO_CLOSING_S
    ) as running:
        yield running


@dataclass(frozen=True)
class Day:
    merchant_id: int
    token: str
    day: date
    references: dict[str, str]


async def a_day_of_everything(db: Database, clock: Clock) -> Day:
    """A merchant with no opening credits and, two days ago (Nepal), a load at the day's
    first instant, a charged payment that succeeds and is half refunded, a charged one
    that fails, a charged one refunded in full (its charge comes back), and a hold at the
    day's last instant posted at the next day's first; a load the day before."""
    created = await new_merchant(db, test_rupees=0)
    day = statements.today() - timedelta(days=2)
    books = Ledger(db, created.merchant_id, clock)
    await books.at(at(day - timedelta(days=1), 23)).load(1000_00, "before")
    await books.at(at(day)).load(500_00)
    a, ref_a = await books.at(at(day, 10)).hold(100_00, 5_00)
    await books.at(at(day, 10, ms=1000)).finish(a, State.SUCCESS, charged=True)
    b, ref_b = await books.at(at(day, 11)).hold(200_00, 10_00)
    await books.at(at(day, 11, ms=2000)).finish(b, State.FAILED, charged=True)
    await books.at(at(day, 12)).refund(ref_a, 40_00, "partial reversal")
    e, ref_e = await books.at(at(day, 13)).hold(30_00, 3_00)
    await books.at(at(day, 13, ms=1000)).finish(e, State.SUCCESS, charged=True)
    await books.at(at(day, 14)).refund(ref_e, None, "reversed in full")
    c, ref_c = await books.at(at(day, 24, ms=-1)).hold(50_00)
    await books.at(at(day + timedelta(days=1))).finish(c, State.SUCCESS, charged=False)
    references = {"a": ref_a, "b": ref_b, "e": ref_e, "c": ref_c}
    return Day(created.merchant_id, created.test_token, day, references)


def test_a_nepal_day_starts_at_1815_utc_the_day_before() -> None:
    day = date(2026, 7, 12)
    starts = datetime(2026, 7, 11, 18, 15, tzinfo=UTC)
    assert day_start_ms(day) == int(starts.timestamp() * 1000)
    assert nepal_day(day_start_ms(day)) == day
    assert nepal_day(day_start_ms(day) - 1) == day - timedelta(days=1)
    assert nepal_day(day_start_ms(day) + DAY_MS - 1) == day
    assert nepal_time(day_start_ms(day)) == "2026-07-12T00:00:00.000+05:45"


@pytest.mark.parametrize(
    "text",
    [
        "07-12-2026",
        "2026-13-01",
        "",
        "2026-02-30",
        "26-07-12",
        "2026-7-12",
        "2026/07/12",
        "２０２６-07-12",
        " 2026-07-12",
        "2026-07-12T00:00",
        None,
        20260712,
        ["2026-07-12"],
    ],
)
def test_a_day_is_written_yyyy_mm_dd_and_real(text: Any) -> None:
    assert parse_day(text) is None


def test_a_real_day_written_yyyy_mm_dd_is_read() -> None:
    assert parse_day("2026-07-12") == date(2026, 7, 12)
    assert parse_day("2024-02-29") == date(2024, 2, 29)


async def test_the_statement_over_http_adds_up_and_closes_at_credits_by_date(
    db: Database, clock: Clock, quiet_server: Server
) -> None:
    server = quiet_server
    found = await a_day_of_everything(db, clock)
    token, day, refs = found.token, found.day, found.references
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        answer = await http.get(STATEMENT, params={"date": day.isoformat(), "token": token})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/json"
        body = answer.json()
        assert set(body) == STATEMENT_FIELDS
        assert body["status"] is True
        assert body["date"] == day.isoformat()
        totals = {k: body[k] for k in ("opening", "loads", "payments", "charges", "refunds")}
        assert totals == {
            "opening": 1000.0,
            "loads": 500.0,
            "payments": 380.0,
            "charges": 18.0,
            # B's hold given back (200 + 10), A's 40, E's 30 and its charge 3.
            "refunds": 283.0,
        }
        assert all(isinstance(v, float) for v in totals.values())
        assert body["closing"] == 1385.0
        kinds = [
            (e["kind"], e["reference"], e["amount"], e["charge"], e["balance"])
            for e in body["entries"]
        ]
        assert kinds == [
            ("load", None, 500.0, 0.0, 1500.0),
            ("payment", refs["a"], 100.0, 5.0, 1395.0),
            ("payment", refs["b"], 200.0, 10.0, 1185.0),
            ("failed", refs["b"], 200.0, 10.0, 1395.0),
            ("refund", refs["a"], 40.0, 0.0, 1435.0),
            ("payment", refs["e"], 30.0, 3.0, 1402.0),
            ("refund", refs["e"], 30.0, 0.0, 1432.0),
            ("charge_refund", refs["e"], 0.0, 3.0, 1435.0),
            ("payment", refs["c"], 50.0, 0.0, 1385.0),
        ]
        first, last = body["entries"][0], body["entries"][-1]
        assert set(first) == ENTRY_FIELDS
        assert first["time"] == f"{day.isoformat()}T00:00:00.000+05:45"
        assert last["time"] == f"{day.isoformat()}T23:59:59.999+05:45"
        assert first["response_id"] is None and first["note"] == "credit load"
        assert isinstance(body["entries"][1]["response_id"], int)
        assert body["entries"][4]["note"] == "partial reversal"

        # The same day by credits/bydate, and the days around it.
        async def credits(on: date) -> Any:
            found = await http.post(CREDITS_BYDATE, json={"token": token, "date": on.isoformat()})
            assert found.status_code == 200, found.text
            assert set(found.json()) == {"credits_available", "status"}
            assert found.json()["status"] is True
            return found.json()["credits_available"]

        assert await credits(day) == 1385.0
        assert await credits(day - timedelta(days=1)) == 1000.0
        # Before the merchant's first entry: 0.
        assert await credits(day - timedelta(days=2)) == 0
        before = await http.get(
            STATEMENT, params={"date": (day - timedelta(days=1)).isoformat(), "token": token}
        )
        assert before.json()["closing"] == body["opening"]
        # The next day: C's post changes nothing available, and is no entry.
        after = await http.get(
            STATEMENT, params={"date": (day + timedelta(days=1)).isoformat(), "token": token}
        )
        assert after.json()["opening"] == after.json()["closing"] == 1385.0
        assert after.json()["entries"] == []
        # Today: the balance so far, as the balance look-up has it.
        now = await http.get(BALANCE, params={"token": token})
        assert await credits(statements.today()) == now.json()["credits_available"] == 1385.0

        # The CSV: a header row and the same entries, as an attachment.
        sheet = await http.get(
            STATEMENT,
            params={"date": day.isoformat(), "format": "csv"},
            headers={"Authorization": f"Token {token}"},
        )
    assert sheet.status_code == 200, sheet.text
    assert sheet.headers["content-type"].startswith("text/csv")
    assert sheet.headers["content-disposition"] == (
        f'attachment; filename="statement-{day.isoformat()}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(sheet.text)))
    assert list(rows[0]) == list(statements.CSV_FIELDS)
    assert [(r["kind"], r["amount"], r["charge"], r["balance"]) for r in rows] == [
        (e["kind"], f"{e['amount']:.2f}", f"{e['charge']:.2f}", f"{e['balance']:.2f}")
        for e in body["entries"]
    ]
    assert [r["time"] for r in rows] == [e["time"] for e in body["entries"]]
    assert [r["response_id"] for r in rows] == [
        "" if e["response_id"] is None else str(e["response_id"]) for e in body["entries"]
    ]
    await assert_books_balance(db)


BAD_DATES = ["07-12-2026", "2026-13-01", "", "2026-02-30", "2026/07/12", 20260712, None]


async def test_credits_by_date_refuses_a_bad_or_future_date_in_the_documents_shape(
    db: Database, server: Server
) -> None:
    created = await new_merchant(db)
    tomorrow = (statements.today() + timedelta(days=1)).isoformat()
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for date_sent in BAD_DATES:
            body: dict[str, Any] = {"token": created.test_token}
            if date_sent is not None:
                body["date"] = date_sent
            answer = await http.post(CREDITS_BYDATE, json=body)
            assert answer.status_code == 400, (date_sent, answer.text)
            assert answer.json() == {"detail": BAD_DATE, "status": False}, date_sent
        future = await http.post(
            CREDITS_BYDATE, json={"token": created.test_token, "date": tomorrow}
        )
        assert future.status_code == 400
        assert future.json() == {"detail": FUTURE_DATE, "status": False}
        # Who calls is checked first, in the common envelope.
        anonymous = await http.post(CREDITS_BYDATE, json={"date": "2026-07-12"})
        assert anonymous.status_code == 400
        assert anonymous.json()["error_code"] == "1001"
        # A merchant's first day: its opening credits, as a JSON number.
        today = await http.post(
            CREDITS_BYDATE,
            json={"token": created.test_token, "date": statements.today().isoformat()},
        )
        assert today.json() == {"credits_available": 1_000_000.0, "status": True}


async def test_the_statement_refuses_a_bad_date_or_format_with_1010_naming_the_field(
    db: Database, server: Server
) -> None:
    created = await new_merchant(db)
    tomorrow = (statements.today() + timedelta(days=1)).isoformat()
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for params, field, detail in [
            *(({"date": bad}, "date", BAD_DATE) for bad in ("07-12-2026", "2026-13-01", "")),
            ({}, "date", BAD_DATE),
            ({"date": tomorrow}, "date", FUTURE_DATE),
            ({"date": "2026-01-01", "format": "xml"}, "format", "format is json or csv"),
        ]:
            answer = await http.get(STATEMENT, params={"token": created.test_token, **params})
            assert answer.status_code == 400, (params, answer.text)
            refused = answer.json()
            assert refused["error_code"] == "1010", params
            assert refused["status"] is False
            assert refused["error_data"] == {field: [detail]}, params


async def test_a_read_starts_from_the_nearest_closing_before_its_day(
    db: Database, clock: Clock
) -> None:
    """A closing stands for all history before it: a (deliberately wrong) closing written
    for a day shows in every later day's reads, and no earlier transfer is summed."""
    found = await a_day_of_everything(db, clock)
    account = await account_of(db, found.merchant_id)
    day = found.day
    assert await statements.credits_on(db, found.merchant_id, "test", day) == 1385_00
    await db.once(
        "INSERT INTO balance_closings (account_id, day, available_paisa, computed_ms)"
        " VALUES ($1, $2, $3, 0)",
        account,
        (day - timedelta(days=1)).isoformat(),
        7_00,
    )
    assert (
        await statements.credits_on(db, found.merchant_id, "test", day - timedelta(days=1)) == 7_00
    )
    later = await statements.statement(db, found.merchant_id, "test", day)
    assert later.opening_paisa == 7_00
    assert later.closing_paisa == 7_00 + 1385_00 - 1000_00
    # A day after a day not closed yet: from the closing, across the day between.
    next_day = await statements.statement(db, found.merchant_id, "test", day + timedelta(days=1))
    assert next_day.opening_paisa == next_day.closing_paisa == later.closing_paisa
    # Days before it are still read from the transfers.
    assert await statements.credits_on(db, found.merchant_id, "test", day - timedelta(days=2)) == 0


async def account_of(db: Database, merchant_id: int, env: str = "test") -> int:
    account = await db.read(lambda tx: statements.merchant_account_id(tx, merchant_id, env))
    assert account is not None
    return account


async def closings_of(db: Database, account: int) -> dict[str, tuple[int, int]]:
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT day, available_paisa, computed_ms FROM balance_closings WHERE account_id = $1",
            account,
        )
    )
    return {str(r["day"]): (int(r["available_paisa"]), int(r["computed_ms"])) for r in rows}


async def test_the_worker_closes_each_finished_day_with_entries_once(
    db: Database, db_url: str, clock: Clock, tmp_path: Path
) -> None:
    found = await a_day_of_everything(db, clock)
    account = await account_of(db, found.merchant_id)
    day = found.day
    expected = {
        (day - timedelta(days=1)).isoformat(): 1000_00,
        day.isoformat(): 1385_00,
        # The post of C: an entry of the account, no change available.
        (day + timedelta(days=1)).isoformat(): 1385_00,
    }
    with running_server(
        db_url,
        tmp_path / "server.log",
        BHUKTANI_DAY_CLOSE_POLL_S="0.1",
        BHUKTANI_DAY_CLOSE_AFTER_S="0",
    ):

        async def closed() -> dict[str, tuple[int, int]] | None:
            found = await closings_of(db, account)
            return found if len(found) >= len(expected) else None

        written = await eventually(closed, timeout_s=20)
        assert {d: paisa for d, (paisa, _) in written.items()} == expected
        # Rounds go on; nothing is written again, nothing rewritten.
        await asyncio.sleep(0.5)
        assert await closings_of(db, account) == written
    # Today's entries (none here, but the merchant's opening credits would be) wait for
    # the day to be over; the closings give the same reads as the transfers did.
    for on, paisa in expected.items():
        assert (
            await statements.credits_on(db, found.merchant_id, "test", date.fromisoformat(on))
            == paisa
        )


async def test_closing_a_day_counts_what_was_stamped_before_midnight_only(
    db: Database, clock: Clock
) -> None:
    """close_days closes days over by day_close_after_s; a day not over yet waits."""
    created = await new_merchant(db, test_rupees=0)
    books = Ledger(db, created.merchant_id, clock)
    yesterday = statements.today() - timedelta(days=1)
    await books.at(at(yesterday, 24, ms=-1)).load(10_00)
    await books.at(at(yesterday, 24)).load(1_00)
    account = await account_of(db, created.merchant_id)
    # A grace longer than the time since yesterday ended: yesterday is not closed yet.
    since_s = (now_ms() - at(yesterday, 24)) / 1000
    await statements.close_days(db, after_s=since_s + 3600)
    assert await closings_of(db, account) == {}
    await statements.close_days(db, after_s=0)
    assert {d: p for d, (p, _) in (await closings_of(db, account)).items()} == {
        yesterday.isoformat(): 10_00
    }


async def operator_runs(db_url: str, *args: str) -> bytes:
    """What a command prints, byte for byte, on a terminal 200 columns wide."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bhuktani", *args],
        env={**cli_env(db_url), "COLUMNS": "200"},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_bhuktani_statement_shows_the_apis_statement(
    db: Database, db_url: str, clock: Clock, quiet_server: Server
) -> None:
    server = quiet_server
    found = await a_day_of_everything(db, clock)
    day = found.day.isoformat()
    args = ("statement", str(found.merchant_id), "--date", day, "--env", "test")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        params = {"token": found.token, "date": day}
        api_json = (await http.get(STATEMENT, params=params)).json()
        api_csv = (await http.get(STATEMENT, params={**params, "format": "csv"})).content
    assert json.loads(await ok(db_url, *args, "--json")) == api_json
    assert await operator_runs(db_url, *args, "--csv") == api_csv
    table = (await operator_runs(db_url, *args)).decode()
    for name, amount in (
        ("opening", "1,000.00"),
        ("+ loads", "500.00"),
        ("- payments", "380.00"),
        ("- charges", "18.00"),
        ("+ refunds", "283.00"),
        ("= closing", "1,385.00"),
    ):
        assert any(
            line.startswith(name) and line.rstrip().endswith(amount) for line in table.splitlines()
        ), (name, table)
    assert found.references["a"] in table
    # The amounts stand right-aligned in their columns: each ends where the header ends.
    header = next(line for line in table.splitlines() if "balance" in line and "kind" in line)
    end = header.index("balance") + len("balance")
    assert any(line[:end].endswith("1,385.00") for line in table.splitlines()), table
    # Refusals, cleanly.
    unknown = await bhuktani(db_url, "statement", "987654321", "--date", day)
    assert unknown.returncode == 1 and "no merchant 987654321" in unknown.stderr
    bad = await bhuktani(db_url, "statement", str(found.merchant_id), "--date", "12-07-2026")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr + bad.stdout
