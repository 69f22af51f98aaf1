"""`bhuktani statement`: a merchant's statement of one Nepal day, as the operator reads it
(a table with its totals), or as the API gives it (--csv, --json)."""

from __future__ import annotations

import sys
from datetime import date
from typing import Annotated

import typer
from rich.table import Table

from bhuktani.books import statements
from bhuktani.cli.common import DEFAULT_ENV, EnvOption, console, with_db
from bhuktani.cli.display import add_amount_column, print_json, rupees, tell
from bhuktani.clock import nepal_time
from bhuktani.settings import Settings
from bhuktani.store import Database, query_row


def _day(text: str) -> date:
    day = statements.parse_day(text)
    if day is None:
        raise typer.BadParameter("the date is written YYYY-MM-DD", param_hint="--date")
    if day > statements.today():
        raise typer.BadParameter("the date is in the future", param_hint="--date")
    return day


def _table(found: statements.Statement) -> Table:
    table = Table(
        title=f"merchant {found.merchant_id} ({found.env}), {found.day.isoformat()} (Nepal time)"
    )
    # The day is in the title, a Nepal day (the books' day, whatever --utc elsewhere):
    # each entry shows its time of day.
    table.add_column("time (NPT)", no_wrap=True)
    table.add_column("kind")
    table.add_column("reference")
    table.add_column("response_id", justify="right")
    for amount in ("amount", "charge", "balance"):
        add_amount_column(table, amount)
    table.add_column("note")
    for entry in found.entries:
        table.add_row(
            nepal_time(entry.time_ms)[11:23],
            entry.kind.value,
            entry.reference or "",
            "" if entry.payment_id is None else str(entry.payment_id),
            rupees(entry.amount_paisa),
            rupees(entry.charge_paisa),
            rupees(entry.balance_paisa),
            entry.note,
        )
    return table


def _totals(found: statements.Statement) -> Table:
    totals = Table.grid(padding=(0, 2))
    totals.add_column()
    totals.add_column(justify="right")
    for name, paisa in (
        ("opening", found.opening_paisa),
        ("+ loads", found.loads_paisa),
        ("- payments", found.payments_paisa),
        ("- charges", found.charges_paisa),
        ("+ refunds", found.refunds_paisa),
        ("= closing", found.closing_paisa),
    ):
        totals.add_row(name, rupees(paisa))
    return totals


def statement_command(
    merchant_id: int,
    day_text: Annotated[str, typer.Option("--date", help="The Nepal day, YYYY-MM-DD.")],
    env: EnvOption = DEFAULT_ENV,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="The entries as CSV, as the API gives them.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object, as the API gives it.")
    ] = False,
) -> None:
    """A merchant's statement of one day: opening, loads, payments, charges, refunds,
    closing, and every entry with the balance after it."""
    if as_csv and as_json:
        raise typer.BadParameter("give at most one of --csv or --json")
    day = _day(day_text)

    async def read(db: Database, _: Settings) -> statements.Statement | None:
        if await query_row(db, "SELECT id FROM merchants WHERE id = $1", merchant_id) is None:
            return None
        return await statements.statement(db, merchant_id, env.value, day)

    found = with_db(read)
    if found is None:
        tell(f"no merchant {merchant_id}")
        raise typer.Exit(1)
    if as_csv:
        # Byte for byte the API's CSV, for the same spreadsheet.
        sys.stdout.write(statements.as_csv(found))
    elif as_json:
        print_json(statements.as_json(found))
    else:
        console.print(_table(found))
        console.print(_totals(found))
