"""`bhuktani callbacks …`: delivery callbacks and events, their attempts, a retry now."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from bhuktani import audit
from bhuktani.cli.common import console, with_db

callbacks_app = typer.Typer(
    help="Delivery callbacks and events: attempts and retries.", no_args_is_help=True
)


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
    """Show callbacks (DLRs and events) and every attempt made to deliver them."""
    from bhuktani.callbacks import outbox

    rows = with_db(lambda db, _: outbox.listing(db, reference))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    # Folded, never cut: an operator needs all of a reference or an event's type.
    table = Table()
    for column in ("id", "merchant", "env", "type", "reference", "status", "attempts"):
        table.add_column(column, overflow="fold")
    for column in ("next", "last"):
        table.add_column(column, overflow="fold")
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
            str(row["event_type"]),
            "-" if row["reference"] is None else str(row["reference"]),
            str(row["status"]),
            str(row["attempts"]),
            _when(row["next_attempt_ms"]),
            last_text,
        )
    console.print(table)


@callbacks_app.command("retry")
def callbacks_retry(
    callback_id: int,
    operator: Annotated[
        str | None, typer.Option("--operator", help="Who acts; defaults to the OS user.")
    ] = None,
) -> None:
    """Send a callback again now (the deliverer in serve or worker picks it up); audited."""
    from bhuktani.callbacks import outbox

    try:
        who = audit.operator_of(operator)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--operator") from None
    if not with_db(lambda db, _: outbox.retry_now(db, callback_id, operator=who)):
        console.print(f"no callback {callback_id}")
        raise typer.Exit(1)
    console.print(f"callback {callback_id} is due now")
