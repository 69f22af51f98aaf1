"""The operator's commands, one module per noun. Each reads the database from
BHUKTANI_DATABASE_URL."""

from __future__ import annotations

from typing import Annotated

import typer

import bhuktani
from bhuktani.cli import server
from bhuktani.cli.alerts import set_low_balance_command
from bhuktani.cli.audit import audit_command
from bhuktani.cli.callbacks import callbacks_app
from bhuktani.cli.charges import charges_app
from bhuktani.cli.credits import credits_app
from bhuktani.cli.disputes import disputes_app
from bhuktani.cli.isp_sim import isp_sim_command
from bhuktani.cli.merchants import merchant_app, operator_app, token_app
from bhuktani.cli.payments import payment_app
from bhuktani.cli.settle import settle_command
from bhuktani.cli.statements import statement_command

app = typer.Typer(help="bhuktani: bill-payment gateway for Nepali ISPs.", no_args_is_help=True)


def _version(asked: bool) -> None:
    if asked:
        typer.echo(f"bhuktani {bhuktani.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """bhuktani: bill-payment gateway for Nepali ISPs."""


app.command()(server.serve)
app.command()(server.migrate)
app.add_typer(merchant_app, name="merchant")
app.add_typer(token_app, name="token")
app.add_typer(operator_app, name="operator")
app.add_typer(credits_app, name="credits")
app.command()(server.worker)
app.add_typer(callbacks_app, name="callbacks")
app.add_typer(payment_app, name="payment")
app.command("isp-sim")(isp_sim_command)
app.command()(server.demo)
app.command("statement")(statement_command)
app.add_typer(charges_app, name="charges")
app.add_typer(disputes_app, name="disputes")
app.command("settle")(settle_command)
app.command("audit")(audit_command)
merchant_app.command("set-low-balance")(set_low_balance_command)


def main() -> None:
    app()
