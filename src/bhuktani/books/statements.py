"""A merchant account's available credits by Nepal day: the daily statement, credits by
date, and the closings the worker writes so that neither reads the whole history.

Every change to a merchant's available credits is a transfer touching its account
(ledger/accounts.py): loads credit it (+), a payment's hold debits amount + charge (-), a
failed payment's void gives the hold back (+), refunds and charge refunds credit it (+),
and a post changes nothing. Over a day, therefore,

    opening + loads - payments - charges + refunds = closing

to the paisa, where the closing is the available balance at the day's end. A day's
closing, once the day is over, is written to balance_closings; a read starts from the
nearest closing before it and sums only the transfers after it, along the accounts'
time indexes (transfers_debit_time, transfers_credit_time).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from functools import partial
from typing import Any

import structlog

from bhuktani import money
from bhuktani.clock import day_end_ms, day_start_ms, nepal_day, nepal_time, now_ms
from bhuktani.ledger import accounts
from bhuktani.runtime import Gateway
from bhuktani.store import Database, Row, Tx

log = structlog.get_logger()

# Before every transfer: the start of a read when no closing precedes it.
BEGINNING_MS = -(2**62)
# Days one account is closed by in one round of the worker, so that a round always ends:
# ten years, so that a first round over a long history closes it all, and the reads that
# follow sum one day, not the days the round left behind.
MAX_DAYS_PER_ROUND = 3660


def parse_day(text: object) -> date | None:
    """A day written YYYY-MM-DD exactly (ASCII digits, real month and day), else None."""
    if not isinstance(text, str) or len(text) != 10 or not text.isascii():
        return None
    year, month, day = text[:4], text[5:7], text[8:]
    if text[4] != "-" or text[7] != "-" or not (year + month + day).isdigit():
        return None
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        return None


def today(at_ms: int | None = None) -> date:
    return nepal_day(now_ms() if at_ms is None else at_ms)


async def merchant_account_id(tx: Tx, merchant_id: int, env: str) -> int | None:
    """The merchant's account, without creating it (a read makes no account): remembered
    once committed (its id never changes), so a statement asks for it once a process."""
    known = accounts.remembered_account(
        tx.memo, "merchant", env, accounts.merchant_code(merchant_id)
    )
    if known is not None:
        return known
    row = await tx.fetchrow(
        "SELECT id FROM accounts WHERE kind = 'merchant' AND env = $1 AND code = $2",
        env,
        accounts.merchant_code(merchant_id),
    )
    return None if row is None else int(row["id"])


async def change_paisa(tx: Tx, account_id: int, from_ms: int, to_ms: int) -> int:
    """How the account's available credits (balance - held) changed by the transfers
    stamped in [from_ms, to_ms): credited by a single or a post; debited by a single or a
    hold, given back by a void; a post on the debit side only turns held into spent."""
    row = await tx.fetchrow(
        "SELECT (SELECT COALESCE(SUM(amount_paisa), 0) FROM transfers"
        " WHERE credit_account_id = $1 AND created_ms >= $2 AND created_ms < $3"
        " AND kind IN ('single', 'post')) AS credited,"
        " (SELECT COALESCE(SUM(CASE kind WHEN 'void' THEN -amount_paisa"
        " WHEN 'post' THEN 0 ELSE amount_paisa END), 0) FROM transfers"
        " WHERE debit_account_id = $1 AND created_ms >= $2 AND created_ms < $3) AS debited",
        account_id,
        from_ms,
        to_ms,
    )
    assert row is not None
    return int(row["credited"]) - int(row["debited"])


# The nearest closing before a day (its_end: up to the day itself), $1 the account, $2 the day.
def _closing_before(its_end: bool) -> str:
    return (
        "SELECT day, available_paisa FROM balance_closings WHERE account_id = $1"
        f" AND day {'<=' if its_end else '<'} $2 ORDER BY day DESC LIMIT 1"
    )


async def _available_from(tx: Tx, account_id: int, closing: Row | None, until_ms: int) -> int:
    """The available credits at until_ms: the closing (None: before every transfer) plus
    the transfers stamped after it and before until_ms."""
    if closing is None:
        base_paisa, from_ms = 0, BEGINNING_MS
    else:
        base_paisa = int(closing["available_paisa"])
        from_ms = day_end_ms(date.fromisoformat(str(closing["day"])))
    if from_ms >= until_ms:
        return base_paisa
    return base_paisa + await change_paisa(tx, account_id, from_ms, until_ms)


async def _available_at(tx: Tx, account_id: int, day: date, *, its_end: bool) -> int:
    """The available credits at the start or the end of `day`: the nearest closing before
    that instant, plus the transfers stamped after that closing and before the instant."""
    closing = await tx.fetchrow(_closing_before(its_end), account_id, day.isoformat())
    until_ms = day_end_ms(day) if its_end else day_start_ms(day)
    return await _available_from(tx, account_id, closing, until_ms)


async def closing_paisa(tx: Tx, account_id: int, day: date) -> int:
    return await _available_at(tx, account_id, day, its_end=True)


async def opening_paisa(tx: Tx, account_id: int, day: date) -> int:
    return await _available_at(tx, account_id, day, its_end=False)


async def credits_on(db: Database, merchant_id: int, env: str, day: date) -> int:
    """The merchant's available credits at the end of a Nepal day (so far, for today)."""

    async def body(tx: Tx) -> int:
        account_id = await merchant_account_id(tx, merchant_id, env)
        return 0 if account_id is None else await closing_paisa(tx, account_id, day)

    return await db.read(body)


class EntryKind(StrEnum):
    LOAD = "load"  # credits loaded by the operator (funding -> merchant)
    PAYMENT = "payment"  # a payment's hold: its amount and charge taken
    FAILED = "failed"  # a failed payment's hold given back, amount and charge
    REFUND = "refund"  # (part of) a Success payment's amount given back
    CHARGE_REFUND = "charge_refund"  # a fully refunded payment's charge given back


@dataclass(frozen=True)
class Entry:
    time_ms: int
    kind: EntryKind
    reference: str | None
    payment_id: int | None
    amount_paisa: int
    charge_paisa: int
    balance_paisa: int  # available after the entry
    note: str


@dataclass(frozen=True)
class Statement:
    merchant_id: int
    env: str
    day: date
    opening_paisa: int
    loads_paisa: int
    payments_paisa: int
    charges_paisa: int
    refunds_paisa: int
    closing_paisa: int
    entries: tuple[Entry, ...]


# A transfer touching the merchant's account, as an entry needs it.
_ENTRY_COLUMNS = (
    "t.id, t.kind, t.amount_paisa, t.payment_id, t.note, t.created_ms, p.reference,"
    " COALESCE(p.charge_paisa, 0) AS charge_paisa"
)
# The merchant credited: by whom tells a load from a refund from a charge refund.
_CREDITED_BY = {
    "funding": EntryKind.LOAD,
    "isp": EntryKind.REFUND,
    "fees": EntryKind.CHARGE_REFUND,
}


async def _day_transfers(
    tx: Tx, account_id: int, day: date
) -> tuple[Row | None, list[tuple[int, int, Row, str]]]:
    """The nearest closing before the day, and the day's transfers on each side of the
    account as (created_ms, id, row, side), oldest first. Posts are left out: they change
    nothing available."""
    start_ms, end_ms = day_start_ms(day), day_end_ms(day)
    # One statement, one round trip: each side along its own time index, and the closing
    # the opening starts from as a row of its own (side 'closing').
    rows = await tx.fetch(
        f"WITH closing AS ({_closing_before(its_end=False)})"
        f" SELECT {_ENTRY_COLUMNS}, NULL AS source, 'debit' AS side, NULL AS day FROM transfers t"
        " LEFT JOIN payments p ON p.id = t.payment_id"
        " WHERE t.debit_account_id = $1 AND t.created_ms >= $3 AND t.created_ms < $4"
        " AND t.kind <> 'post'"
        f" UNION ALL SELECT {_ENTRY_COLUMNS}, a.kind AS source, 'credit' AS side, NULL AS day"
        " FROM transfers t JOIN accounts a ON a.id = t.debit_account_id"
        " LEFT JOIN payments p ON p.id = t.payment_id"
        " WHERE t.credit_account_id = $1 AND t.created_ms >= $3 AND t.created_ms < $4"
        " UNION ALL SELECT NULL, NULL, available_paisa, NULL, NULL, NULL, NULL, 0, NULL,"
        " 'closing', day FROM closing",
        account_id,
        day.isoformat(),
        start_ms,
        end_ms,
    )
    closing = None
    found = []
    for r in rows:
        if r["side"] == "closing":
            closing = {"day": r["day"], "available_paisa": r["amount_paisa"]}
        else:
            found.append((int(r["created_ms"]), int(r["id"]), r, str(r["side"])))
    found.sort(key=lambda item: (item[0], item[1]))
    return closing, found


def _entry(row: Row, side: str, balance_paisa: int) -> Entry:
    """One transfer as a statement entry; balance_paisa is the available before it."""
    kind_of_transfer = str(row["kind"])
    amount_paisa = int(row["amount_paisa"])
    charge_paisa = 0
    if side == "debit":
        # A merchant is debited only by holds and their closes (no single leaves it).
        assert kind_of_transfer in ("pending", "void"), kind_of_transfer
        kind = EntryKind.PAYMENT if kind_of_transfer == "pending" else EntryKind.FAILED
        # The hold is amount + charge; the payment row says which part is the charge.
        charge_paisa = int(row["charge_paisa"])
        assert 0 <= charge_paisa <= amount_paisa, (row["id"], charge_paisa)
        amount_paisa -= charge_paisa
    else:
        assert kind_of_transfer == "single", kind_of_transfer
        kind = _CREDITED_BY[str(row["source"])]
        if kind is EntryKind.CHARGE_REFUND:
            amount_paisa, charge_paisa = 0, amount_paisa
    payment_id = row["payment_id"]
    assert (payment_id is None) == (kind is EntryKind.LOAD), (row["id"], kind)
    taken_paisa = amount_paisa + charge_paisa
    return Entry(
        time_ms=int(row["created_ms"]),
        kind=kind,
        reference=None if row["reference"] is None else str(row["reference"]),
        payment_id=None if payment_id is None else int(payment_id),
        amount_paisa=amount_paisa,
        charge_paisa=charge_paisa,
        balance_paisa=balance_paisa + (-taken_paisa if kind is EntryKind.PAYMENT else taken_paisa),
        note=str(row["note"] or ""),
    )


async def statement(db: Database, merchant_id: int, env: str, day: date) -> Statement:
    """The merchant's statement of a Nepal day (so far, for today)."""

    async def body(tx: Tx) -> Statement:
        account_id = await merchant_account_id(tx, merchant_id, env)
        if account_id is None:
            return Statement(merchant_id, env, day, 0, 0, 0, 0, 0, 0, ())
        closing, transfers = await _day_transfers(tx, account_id, day)
        opening = await _available_from(tx, account_id, closing, day_start_ms(day))
        entries: list[Entry] = []
        balance_paisa = opening
        for _, _, row, side in transfers:
            entry = _entry(row, side, balance_paisa)
            entries.append(entry)
            balance_paisa = entry.balance_paisa
        return _totalled(merchant_id, env, day, opening, entries)

    return await db.read(body)


def _totalled(
    merchant_id: int, env: str, day: date, opening_paisa: int, entries: Sequence[Entry]
) -> Statement:
    def total(*kinds: EntryKind, part: str = "amount_paisa") -> int:
        return sum(int(getattr(e, part)) for e in entries if e.kind in kinds)

    loads = total(EntryKind.LOAD)
    payments = total(EntryKind.PAYMENT)
    charges = total(EntryKind.PAYMENT, part="charge_paisa")
    refunds = total(EntryKind.FAILED, EntryKind.REFUND) + total(
        EntryKind.FAILED, EntryKind.CHARGE_REFUND, part="charge_paisa"
    )
    closing = entries[-1].balance_paisa if entries else opening_paisa
    assert opening_paisa + loads - payments - charges + refunds == closing, (merchant_id, day)
    return Statement(
        merchant_id,
        env,
        day,
        opening_paisa,
        loads,
        payments,
        charges,
        refunds,
        closing,
        tuple(entries),
    )


CSV_FIELDS = (
    "time",
    "kind",
    "reference",
    "response_id",
    "amount",
    "charge",
    "balance",
    "note",
)


def entry_fields(entry: Entry) -> dict[str, Any]:
    """An entry as the API's JSON shows it: rupees as numbers."""
    return {
        "time": nepal_time(entry.time_ms),
        "kind": entry.kind.value,
        "reference": entry.reference,
        "response_id": entry.payment_id,
        "amount": money.to_rupees(entry.amount_paisa),
        "charge": money.to_rupees(entry.charge_paisa),
        "balance": money.to_rupees(entry.balance_paisa),
        "note": entry.note,
    }


def as_json(found: Statement) -> dict[str, Any]:
    return {
        "status": True,
        "date": found.day.isoformat(),
        "opening": money.to_rupees(found.opening_paisa),
        "loads": money.to_rupees(found.loads_paisa),
        "payments": money.to_rupees(found.payments_paisa),
        "charges": money.to_rupees(found.charges_paisa),
        "refunds": money.to_rupees(found.refunds_paisa),
        "closing": money.to_rupees(found.closing_paisa),
        "entries": [entry_fields(entry) for entry in found.entries],
    }


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection):
# such text (a reference, an operator's note) is written behind a quote mark.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """Text as a CSV cell a spreadsheet shows and never runs."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def as_csv(found: Statement) -> str:
    """The entries with a header row; amounts as the documents' strings ("1695.00")."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    for entry in found.entries:
        writer.writerow(
            (
                nepal_time(entry.time_ms),
                entry.kind.value,
                csv_cell(entry.reference or ""),
                "" if entry.payment_id is None else entry.payment_id,
                money.format_rupees(entry.amount_paisa),
                money.format_rupees(entry.charge_paisa),
                money.format_rupees(entry.balance_paisa),
                csv_cell(entry.note),
            )
        )
    return out.getvalue()


# The worker's closings.


async def _next_entry_ms(tx: Tx, account_id: int, from_ms: int) -> int | None:
    """When the account's first transfer at or after from_ms was stamped, if any."""
    row = await tx.fetchrow(
        "SELECT (SELECT MIN(created_ms) FROM transfers"
        " WHERE debit_account_id = $1 AND created_ms >= $2) AS debit,"
        " (SELECT MIN(created_ms) FROM transfers"
        " WHERE credit_account_id = $1 AND created_ms >= $2) AS credit",
        account_id,
        from_ms,
    )
    assert row is not None
    found = [int(row[side]) for side in ("debit", "credit") if row[side] is not None]
    return min(found) if found else None


async def _next_closing(
    account_id: int, from_ms: int, last_day: date, tx: Tx
) -> tuple[date, int] | None:
    """The account's next day with entries from from_ms, if it is over by last_day, and
    how its available credits changed from from_ms to that day's end."""
    next_ms = await _next_entry_ms(tx, account_id, from_ms)
    if next_ms is None or nepal_day(next_ms) > last_day:
        return None
    day = nepal_day(next_ms)
    return day, await change_paisa(tx, account_id, from_ms, day_end_ms(day))


async def close_account(db: Database, account_id: int, last_day: date) -> int:
    """Write the closing of each day with entries after the account's last closing, up to
    last_day (the last day over); returns how many were written.

    Only days with entries get a closing: a read finds the nearest closing before its day
    by the primary key, and between that closing and the day there are then no transfers
    to sum, so reads stay bounded without a row per account per idle day."""

    async def last_closing(tx: Tx) -> Row | None:
        return await tx.fetchrow(
            "SELECT day, available_paisa FROM balance_closings"
            " WHERE account_id = $1 ORDER BY day DESC LIMIT 1",
            account_id,
        )

    row = await db.read(last_closing)
    if row is None:
        available_paisa, from_ms = 0, BEGINNING_MS
    else:
        available_paisa = int(row["available_paisa"])
        from_ms = day_end_ms(date.fromisoformat(str(row["day"])))
    written = 0
    for _ in range(MAX_DAYS_PER_ROUND):
        step = await db.read(partial(_next_closing, account_id, from_ms, last_day))
        if step is None:
            break
        day, change = step
        available_paisa += change
        assert available_paisa >= 0, (account_id, day, available_paisa)
        # Never rewritten: a closing another worker wrote first stays (it is the same).
        inserted = await db.once(
            "INSERT INTO balance_closings (account_id, day, available_paisa, computed_ms)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, day) DO NOTHING RETURNING day",
            account_id,
            day.isoformat(),
            available_paisa,
            now_ms(),
        )
        written += inserted is not None
        from_ms = day_end_ms(day)
    return written


def last_day_over(at_ms: int, after_s: float) -> date:
    """The last Nepal day over by after_s at at_ms: a transfer stamped before midnight but
    committed a little after it is counted before its day is closed."""
    return nepal_day(at_ms - int(after_s * 1000)) - timedelta(days=1)


async def close_days(db: Database, *, after_s: float) -> int:
    """One round: every merchant account's finished days closed; returns how many."""
    last_day = last_day_over(now_ms(), after_s)
    rows = await db.read(
        lambda tx: tx.fetch("SELECT id FROM accounts WHERE kind = 'merchant' ORDER BY id")
    )
    written = 0
    for row in rows:
        written += await close_account(db, int(row["id"]), last_day)
    return written


async def run(gateway: Gateway, stop: asyncio.Event) -> None:
    """Until stop is set: each day_close_poll_s, the days over are closed; a failing
    round is logged and tried again at the next one."""
    settings = gateway.settings
    while not stop.is_set():
        try:
            written = await close_days(gateway.db, after_s=settings.day_close_after_s)
        except Exception:
            log.exception("day_close_failed")
        else:
            if written:
                log.info("days_closed", count=written)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.day_close_poll_s)
