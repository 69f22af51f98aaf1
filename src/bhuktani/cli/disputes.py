"""`bhuktani disputes …`: the merchants' disputes, and an operator's resolution of one
(a refund or a rejection, audited, the merchant called back). The rules are in
books.disputes."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from bhuktani import audit, money
from bhuktani.cli.common import AllOption, CursorOption, JsonOption, UtcOption, console, with_db
from bhuktani.cli.display import (
    Times,
    add_amount_column,
    paisa_of,
    print_json,
    rupees,
    shown,
    tell,
)
from bhuktani.cli.paging import Page, pages, tell_more
from bhuktani.settings import Settings
from bhuktani.store import Database, keyset

disputes_app = typer.Typer(
    help="Merchants' disputes of payments: list them, refund or reject one.",
    no_args_is_help=True,
)


def _rupees(amount: object) -> str:
    return rupees(paisa_of(amount))


DISPUTES_PAGE = 100


@disputes_app.command("list")
def disputes_list(
    open_only: Annotated[bool, typer.Option("--open", help="Only those still open.")] = False,
    merchant: Annotated[
        int | None, typer.Option("--merchant", help="Only this merchant's.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="Disputes on a page.")
    ] = DISPUTES_PAGE,
    cursor: CursorOption = None,
    every: AllOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False,
    utc: UtcOption = False,
) -> None:
    """Disputes, newest first, every merchant and environment unless told, a page at a
    time: a page ends with the command of the next one ("more: ...")."""
    from bhuktani.books import disputes

    async def read(db: Database, _: Settings) -> Page[dict[str, Any]]:
        async def fetch(after: keyset.Position | None) -> tuple[list[dict[str, Any]], str | None]:
            return await disputes.operator_page(
                db, open_only=open_only, merchant_id=merchant, limit=limit, after=after
            )

        return await pages(fetch, cursor=cursor, every=every)

    page = with_db(read)
    words = ["bhuktani", "disputes", "list"]
    if open_only:
        words.append("--open")
    if merchant is not None:
        words += ["--merchant", str(merchant)]
    if limit != DISPUTES_PAGE:
        words += ["--limit", str(limit)]
    if as_json:
        print_json(page.rows)
        tell_more([*words, "--json"], page, as_json=True)
        return
    console.print(_table(page.rows, Times(utc)))
    tell_more([*words, "--utc"] if utc else words, page, as_json=False)


def _table(rows: list[dict[str, Any]], times: Times) -> Table:
    table = Table("id", "merchant", "env", "reference")
    add_amount_column(table, "amount (Rs)")
    table.add_column("status")
    times.add_column(table, "raised")
    table.add_column("reason")
    add_amount_column(table, "refund (Rs)")
    table.add_column("resolved by")
    table.add_column("note")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["merchant_id"]),
            str(row["env"]),
            str(row["reference"]),
            _rupees(row["amount"]),
            str(row["status"]),
            times.cell(row["created_at"]),
            str(row["reason"]),
            _rupees(row["refund_amount"]),
            row["resolved_by"] or "-",
            row["note"] or "-",
        )
    return table


@disputes_app.command("resolve")
def disputes_resolve(
    dispute_id: int,
    note: Annotated[
        str, typer.Option("--note", help="Why; the merchant reads it (at most 500 chars).")
    ],
    refund: Annotated[
        bool, typer.Option("--refund", help="Give the money back (a refund transfer).")
    ] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Refuse it; no money moves.")] = False,
    amount: Annotated[
        str | None,
        typer.Option("--amount", help="Rupees to refund; default all that is left unrefunded."),
    ] = None,
    operator: Annotated[
        str | None, typer.Option("--operator", help="Who acts; defaults to the OS user.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Refund or reject an open dispute, once: audited, and the merchant's callback URL
    gets the dispute.resolved event."""
    from bhuktani.books import disputes

    if refund == reject:
        raise typer.BadParameter("give exactly one of --refund or --reject")
    if amount is not None and not refund:
        raise typer.BadParameter("--amount goes with --refund", param_hint="--amount")
    amount_paisa = None
    if amount is not None:
        try:
            amount_paisa = money.to_paisa(amount)
        except money.AmountError as exc:
            raise typer.BadParameter(str(exc), param_hint="--amount") from None
    try:
        who = audit.operator_of(operator)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--operator") from None
    try:
        done = with_db(
            lambda db, _: disputes.resolve(
                db,
                dispute_id,
                refund=refund,
                amount_paisa=amount_paisa,
                note=note,
                operator_name=who,
            )
        )
    except disputes.DisputeError as exc:
        tell(f"refused: {exc}")
        raise typer.Exit(1) from None
    dispute = done.dispute
    if as_json:
        print_json(
            {
                "dispute": dispute,
                "audit_id": done.audit_id,
                "event_id": done.event_id,
                "refund_transfer_id": done.refund_transfer_id,
            }
        )
        return
    if dispute["status"] == disputes.REFUNDED:
        outcome = (
            f"refunded {_rupees(dispute['refund_amount'])} (transfer {done.refund_transfer_id})"
        )
    else:
        outcome = "rejected"
    told = "merchant called back" if done.event_id else "merchant has no callback URL"
    typer.echo(
        shown(
            f"dispute {dispute_id} of {dispute['reference']} {outcome};"
            f" audit entry {done.audit_id}; {told}"
        )
    )
