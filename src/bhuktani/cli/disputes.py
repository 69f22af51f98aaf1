"""`bhuktani disputes …`: the merchants' disputes, and an operator's resolution of one
(a refund or a rejection, audited, the merchant called back). The rules are in
books.disputes."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from bhuktani import audit, money
from bhuktani.cli.common import console, with_db
from bhuktani.cli.display import shown

disputes_app = typer.Typer(
    help="Merchants' disputes of payments: list them, refund or reject one.",
    no_args_is_help=True,
)


def _rupees(amount: object) -> str:
    return "-" if amount is None else f"{amount:.2f}"


@disputes_app.command("list")
def disputes_list(
    open_only: Annotated[bool, typer.Option("--open", help="Only those still open.")] = False,
    merchant: Annotated[
        int | None, typer.Option("--merchant", help="Only this merchant's.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False,
) -> None:
    """Disputes, newest first (at most 1000), every merchant and environment unless told."""
    from bhuktani.books import disputes

    rows = with_db(lambda db, _: disputes.listing(db, open_only=open_only, merchant_id=merchant))
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table(
        "id", "merchant", "env", "reference", "amount", "status", "raised", "reason",
        "refund", "resolved by", "note",
    )  # fmt: skip
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["merchant_id"]),
            str(row["env"]),
            str(row["reference"]),
            _rupees(row["amount"]),
            str(row["status"]),
            str(row["created_at"]),
            str(row["reason"]),
            _rupees(row["refund_amount"]),
            row["resolved_by"] or "-",
            row["note"] or "-",
        )
    console.print(table)


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
        typer.echo(shown(f"refused: {exc}"), err=True)
        raise typer.Exit(1) from None
    dispute = done.dispute
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
