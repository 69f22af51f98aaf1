"""`bhuktani credits …`: credits moved to merchants as ledger transfers from the funding
account, loaded by the operator or asked for by a merchant and decided here. The rules
are in books.credit_requests; every action is audited."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from bhuktani import audit, money
from bhuktani.books import credit_requests as requests
from bhuktani.cli.common import console, paisa, with_db
from bhuktani.cli.display import shown
from bhuktani.store import Database

T = TypeVar("T")
credits_app = typer.Typer(
    help="Move credits to merchants (ledger transfers); decide their credit requests.",
    no_args_is_help=True,
)

OperatorOption = Annotated[
    str | None, typer.Option("--operator", help="Who acts, for the audit; defaults to the OS user.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object.")]


def _run(fn: Callable[[Database], Awaitable[T]]) -> T:
    try:
        return with_db(lambda db, _: fn(db))
    except requests.CreditRequestError as exc:
        typer.echo(shown(f"refused: {exc}"), err=True)
        raise typer.Exit(1) from None


def _operator(given: str | None) -> str:
    try:
        return audit.operator_of(given)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--operator") from None


def _env(env: str | None) -> None:
    if env is not None and env not in requests.ENVS:
        raise typer.BadParameter("env must be test or live", param_hint="--env")


# A table's time, to the minute ("2026-12-07 12:45"), the title naming the zone; --json
# gives the seconds and the offset.
MINUTE_SHOWN = "YYYY-MM-DD HH:MM"


def _minute(iso_time: str | None) -> str:
    return "" if iso_time is None else iso_time[: len(MINUTE_SHOWN)].replace("T", " ")


def _decision(row: dict[str, Any]) -> str:
    if row["status"] == "pending":
        return "pending"
    words = f"{row['status']} {_minute(row['decided_at'])} by {row['decided_by']}"
    return f"{words}: {row['note']}" if row["note"] else words


def _decided(done: requests.Decided) -> dict[str, Any]:
    return {
        **dataclasses.asdict(done),
        "amount": money.format_rupees(done.amount_paisa),
    }


@credits_app.command("load")
def credits_load(
    merchant_id: int,
    amount: str,
    env: Annotated[str, typer.Option(help="live or test.")] = "live",
    note: Annotated[str, typer.Option(help="Why, for the books.")] = "credit load",
    operator: OperatorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Load credits: a ledger transfer from the operator's funding account."""
    _env(env)
    amount_paisa = paisa(amount)
    who = _operator(operator)
    done = _run(lambda db: requests.load(db, merchant_id, env, amount_paisa, note, who))
    if as_json:
        view = {
            **dataclasses.asdict(done),
            "amount": money.format_rupees(done.amount_paisa),
            "available": money.format_rupees(done.available_paisa),
        }
        typer.echo(json.dumps(view))
        return
    console.print(
        f"loaded {money.format_rupees(amount_paisa)} to merchant {merchant_id} ({env});"
        f" available {money.format_rupees(done.available_paisa)} (transfer {done.transfer_id})"
    )


@credits_app.command("requests")
def credits_requests(
    status: Annotated[str, typer.Option(help="pending, approved, rejected or all.")] = "pending",
    merchant: Annotated[int | None, typer.Option(help="Only this merchant's.")] = None,
    env: Annotated[str | None, typer.Option(help="Only this environment: test or live.")] = None,
    limit: Annotated[
        int, typer.Option(help=f"At most this many (1 to {requests.MAX_LIMIT}).")
    ] = requests.DEFAULT_LIMIT,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False,
) -> None:
    """Merchants' credit requests, oldest first (pending ones by default)."""
    _env(env)
    if status not in (*requests.STATUSES, "all"):
        raise typer.BadParameter(
            "status must be pending, approved, rejected or all", param_hint="--status"
        )
    wanted = None if status == "all" else status
    rows = _run(
        lambda db: requests.listing(db, status=wanted, merchant_id=merchant, env=env, limit=limit)
    )
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        console.print(f"no {status} credit requests")
        return
    table = Table(title=f"credit requests ({status}), Nepal time (UTC+05:45)")

    def widest(key: str, heading: str) -> int:
        return max(len(heading), *(len(str(row[key])) for row in rows))

    # Ids, amounts and times are never cut; a decision's words fold onto more lines.
    table.add_column("id", no_wrap=True, min_width=widest("id", "id"))
    table.add_column("merchant", no_wrap=True, min_width=widest("merchant_id", "merchant"))
    table.add_column("env", no_wrap=True, min_width=4)
    table.add_column(
        "amount (Rs)", justify="right", no_wrap=True, min_width=widest("amount", "amount (Rs)")
    )
    table.add_column("requested", no_wrap=True, min_width=len(MINUTE_SHOWN))
    decided = status != "pending"
    if decided:
        table.add_column("decision", overflow="fold")
        table.add_column("transfer", overflow="fold")
    for row in rows:
        cells = [str(row["id"]), str(row["merchant_id"]), row["env"], row["amount"]]
        cells.append(_minute(row["requested_at"]))
        if decided:
            cells += [_decision(row), "" if row["transfer_id"] is None else str(row["transfer_id"])]
        table.add_row(*cells)
    console.print(table)
    if len(rows) == limit:
        console.print(f"the first {limit} shown; narrow with --merchant, --env or --status")


@credits_app.command("approve")
def credits_approve(
    request_id: int,
    operator: OperatorOption = None,
    note: Annotated[str | None, typer.Option(help="Why, for the books.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a pending credit request: load its merchant with the amount asked."""
    who = _operator(operator)
    done = _run(lambda db: requests.approve(db, request_id, operator=who, note=note))
    if as_json:
        typer.echo(json.dumps(_decided(done)))
        return
    console.print(
        f"approved credit request {done.request_id}: loaded"
        f" {money.format_rupees(done.amount_paisa)} to merchant {done.merchant_id}"
        f" ({done.env}), transfer {done.transfer_id}"
    )


@credits_app.command("reject")
def credits_reject(
    request_id: int,
    note: Annotated[str, typer.Option(help="Why, for the books and the merchant.")],
    operator: OperatorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reject a pending credit request; no money moves."""
    who = _operator(operator)
    done = _run(lambda db: requests.reject(db, request_id, operator=who, note=note))
    if as_json:
        typer.echo(json.dumps(_decided(done)))
        return
    console.print(
        f"rejected credit request {done.request_id} of merchant {done.merchant_id}"
        f" ({done.env}) for {money.format_rupees(done.amount_paisa)}"
    )
