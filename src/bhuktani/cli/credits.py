"""`bhuktani credits …`: credits moved to merchants, as ledger transfers."""

from __future__ import annotations

from typing import Annotated

import typer

from bhuktani import money
from bhuktani.cli.common import console, paisa, with_db
from bhuktani.merchants import service as merchants

credits_app = typer.Typer(
    help="Move credits to merchants (ledger transfers).", no_args_is_help=True
)


@credits_app.command("load")
def credits_load(
    merchant_id: int,
    amount: str,
    env: Annotated[str, typer.Option(help="live or test.")] = "live",
    note: Annotated[str, typer.Option(help="Why, for the books.")] = "credit load",
) -> None:
    """Load credits: a ledger transfer from the operator's funding account."""
    if env not in merchants.ENVS:
        raise typer.BadParameter("env must be live or test")
    amount_paisa = paisa(amount)
    try:
        with_db(lambda db, _: merchants.load_credits(db, merchant_id, env, amount_paisa, note))
    except LookupError as exc:
        console.print(str(exc))
        raise typer.Exit(1) from None
    console.print(f"loaded {money.format_rupees(amount_paisa)} to merchant {merchant_id} ({env})")
