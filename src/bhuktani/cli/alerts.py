"""`bhuktani merchant set-low-balance …`: the threshold below which a merchant hears one
balance.low event per dip (books.alerts)."""

from __future__ import annotations

from typing import Annotated

import typer

from bhuktani import audit
from bhuktani.cli.common import DEFAULT_ENV, EnvOption, paisa, with_db
from bhuktani.cli.display import rupees, tell


def set_low_balance_command(
    merchant_id: int,
    below: Annotated[
        str | None,
        typer.Option("--below", help="Rupees; balance.low is sent when available drops below."),
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="Remove the threshold.")] = False,
    env: EnvOption = DEFAULT_ENV,
    operator: Annotated[
        str | None, typer.Option("--operator", help="Who acts; defaults to the OS user.")
    ] = None,
) -> None:
    """Set a merchant's low-balance threshold (`--below 0` or `--off` removes it): its
    callback URL gets one signed balance.low event each time its available credits drop
    below it, heard within BHUKTANI_LOW_BALANCE_POLL_S; audited."""
    from bhuktani.books import alerts

    if off == (below is not None):
        raise typer.BadParameter("give exactly one of --below RS or --off")
    below_paisa = None if below is None else paisa(below, allow_zero=True) or None
    try:
        who = audit.operator_of(operator)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--operator") from None
    try:
        with_db(
            lambda db, _: alerts.set_threshold(
                db, merchant_id, env.value, below_paisa, operator=who
            )
        )
    except alerts.UnknownMerchant as exc:
        tell(f"refused: {exc}")
        raise typer.Exit(1) from None
    if below_paisa is None:
        typer.echo(f"merchant {merchant_id} {env.value}: no low-balance threshold")
    else:
        typer.echo(f"merchant {merchant_id} {env.value}: balance.low below {rupees(below_paisa)}")
