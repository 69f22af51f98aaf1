"""The operator's commands, one module per noun. Each reads the database from
BHUKTANI_DATABASE_URL."""

from __future__ import annotations

import typer

from bhuktani.cli import server
from bhuktani.cli.callbacks import callbacks_app
from bhuktani.cli.credits import credits_app
from bhuktani.cli.isp_sim import isp_sim_command
from bhuktani.cli.merchants import merchant_app, token_app
from bhuktani.cli.payments import payment_app

app = typer.Typer(help="bhuktani: bill-payment gateway for Nepali ISPs.", no_args_is_help=True)
app.command()(server.serve)
app.command()(server.migrate)
app.add_typer(merchant_app, name="merchant")
app.add_typer(token_app, name="token")
app.add_typer(credits_app, name="credits")
app.command()(server.worker)
app.add_typer(callbacks_app, name="callbacks")
app.add_typer(payment_app, name="payment")
app.command("isp-sim")(isp_sim_command)
app.command()(server.demo)


def main() -> None:
    app()
