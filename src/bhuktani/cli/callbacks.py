"""`bhuktani callbacks …`: delivery callbacks, their attempts, a retry now."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from bhuktani.cli.common import console, with_db

callbacks_app = typer.Typer(help="Delivery callbacks: attempts and retries.", no_args_is_help=True)


def _when(ms: object) -> str:
    if not isinstance(ms, int):
        return "-"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


@callbacks_app.command("list")
def callbacks_list(
    reference: Annotated[str | None, typer.Option(help="Only this payment reference.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """Show callbacks and every attempt made to deliver them."""
    from bhuktani.callbacks import outbox

    rows = with_db(lambda db, _: outbox.listing(db, reference))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    table = Table("id", "merchant", "env", "reference", "status", "attempts", "next", "last")
    for row in rows:
        attempts = row["attempt_log"]
        assert isinstance(attempts, list)
        last = attempts[-1] if attempts else None
        last_text = "-"
        if last is not None:
            outcome = last["http_status"] or last["error"]
            last_text = f"{_when(last['attempted_ms'])} {outcome} {last['latency_ms']}ms"
        table.add_row(
            str(row["id"]),
            str(row["merchant_id"]),
            str(row["env"]),
            str(row["reference"]),
            str(row["status"]),
            str(row["attempts"]),
            _when(row["next_attempt_ms"]),
            last_text,
        )
    console.print(table)


@callbacks_app.command("retry")
def callbacks_retry(callback_id: int) -> None:
    """Send a callback again now (the deliverer in serve or worker picks it up)."""
    from bhuktani.callbacks import outbox

    if not with_db(lambda db, _: outbox.retry_now(db, callback_id)):
        console.print(f"no callback {callback_id}")
        raise typer.Exit(1)
    console.print(f"callback {callback_id} is due now")
