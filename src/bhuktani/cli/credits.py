"""`bhuktani credits …`: credits moved to merchants as ledger transfers from the funding
account, loaded by the operator or asked for by a merchant and decided here. The rules
are in books.credit_requests; every action is audited."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from bhuktani import audit, money
from bhuktani.books import credit_requests as requests
from bhuktani.cli.common import (
    DEFAULT_ENV,
    AllOption,
    CursorOption,
    EnvFilter,
    EnvOption,
    UtcOption,
    console,
    paisa,
    with_db,
)
from bhuktani.cli.display import Times, add_amount_column, print_json, rupees, tell
from bhuktani.cli.paging import Page, pages, tell_more
from bhuktani.store import Database, keyset

T = TypeVar("T")
credits_app = typer.Typer(
    help="Move credits to merchants (ledger transfers); decide their credit requests.",
    no_args_is_help=True,
)

OperatorOption = Annotated[
    str | None, typer.Option("--operator", help="Who acts, for the audit; defaults to the OS user.")
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="One JSON object on stdout; messages go to stderr.")
]


def _run(fn: Callable[[Database], Awaitable[T]]) -> T:
    try:
        return with_db(lambda db, _: fn(db))
    except requests.CreditRequestError as exc:
        tell(f"refused: {exc}")
        raise typer.Exit(1) from None


def _operator(given: str | None) -> str:
    try:
        return audit.operator_of(given)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--operator") from None


def _decision(row: dict[str, Any], times: Times) -> str:
    if row["status"] == "pending":
        return "pending"
    words = f"{row['status']} {times.cell(row['decided_at'])} by {row['decided_by']}"
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
    env: EnvOption = DEFAULT_ENV,
    note: Annotated[str, typer.Option(help="Why, for the books.")] = "credit load",
    operator: OperatorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Load credits: a ledger transfer from the operator's funding account (TEST unless
    --env live)."""
    amount_paisa = paisa(amount)
    who = _operator(operator)
    done = _run(lambda db: requests.load(db, merchant_id, env.value, amount_paisa, note, who))
    if as_json:
        view = {
            **dataclasses.asdict(done),
            "amount": money.format_rupees(done.amount_paisa),
            "available": money.format_rupees(done.available_paisa),
        }
        print_json(view)
        return
    console.print(
        f"loaded {rupees(amount_paisa)} to merchant {merchant_id} ({env.value});"
        f" available {rupees(done.available_paisa)} (transfer {done.transfer_id})"
    )


@credits_app.command("requests")
def credits_requests(
    status: Annotated[str, typer.Option(help="pending, approved, rejected or all.")] = "pending",
    merchant: Annotated[int | None, typer.Option(help="Only this merchant's.")] = None,
    env: EnvFilter = None,
    limit: Annotated[
        int, typer.Option(min=1, max=requests.MAX_LIMIT, help="Requests on a page.")
    ] = requests.DEFAULT_LIMIT,
    cursor: CursorOption = None,
    every: AllOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False,
    utc: UtcOption = False,
) -> None:
    """Merchants' credit requests, oldest first (pending ones by default), a page at a
    time: a page ends with the command of the next one ("more: ...")."""
    if status not in (*requests.STATUSES, "all"):
        raise typer.BadParameter(
            "status must be pending, approved, rejected or all", param_hint="--status"
        )
    wanted = None if status == "all" else status
    env_text = None if env is None else env.value

    async def read(db: Database) -> Page[dict[str, Any]]:
        async def fetch(after: keyset.Position | None) -> tuple[list[dict[str, Any]], str | None]:
            return await requests.page(
                db, status=wanted, merchant_id=merchant, env=env_text, limit=limit, after=after
            )

        return await pages(fetch, cursor=cursor, every=every)

    page = _run(read)
    words = ["bhuktani", "credits", "requests", "--status", status]
    if merchant is not None:
        words += ["--merchant", str(merchant)]
    if env is not None:
        words += ["--env", env.value]
    if limit != requests.DEFAULT_LIMIT:
        words += ["--limit", str(limit)]
    if as_json:
        print_json(page.rows)
        tell_more([*words, "--json"], page, as_json=True)
        return
    if not page.rows:
        tell(f"no {status} credit requests")
    else:
        console.print(_requests_table(page.rows, status, Times(utc)))
    tell_more(words, page, as_json=False)


def _requests_table(rows: list[dict[str, Any]], status: str, times: Times) -> Table:
    table = Table(title=f"credit requests ({status})")

    def widest(key: str, heading: str) -> int:
        return max(len(heading), *(len(str(row[key])) for row in rows))

    # Ids, amounts and times are never cut; a decision's words fold onto more lines.
    table.add_column("id", no_wrap=True, min_width=widest("id", "id"))
    table.add_column("merchant", no_wrap=True, min_width=widest("merchant_id", "merchant"))
    table.add_column("env", no_wrap=True, min_width=4)
    add_amount_column(table, "amount (Rs)")
    times.add_column(table, "requested")
    decided = status != "pending"
    if decided:
        table.add_column(times.header("decision"), overflow="fold")
        table.add_column("transfer", overflow="fold")
    for row in rows:
        cells = [str(row["id"]), str(row["merchant_id"]), row["env"], rupees(row["amount_paisa"])]
        cells.append(times.cell(row["requested_at"]))
        if decided:
            cells += [
                _decision(row, times),
                "" if row["transfer_id"] is None else str(row["transfer_id"]),
            ]
        table.add_row(*cells)
    return table


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
        print_json(_decided(done))
        return
    console.print(
        f"approved credit request {done.request_id}: loaded"
        f" {rupees(done.amount_paisa)} to merchant {done.merchant_id}"
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
        print_json(_decided(done))
        return
    console.print(
        f"rejected credit request {done.request_id} of merchant {done.merchant_id}"
        f" ({done.env}) for {rupees(done.amount_paisa)}"
    )
