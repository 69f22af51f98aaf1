"""`bhuktani callbacks …`: delivery callbacks and events, their attempts, a retry now."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bhuktani import audit
from bhuktani.cli.common import AllOption, CursorOption, UtcOption, console, with_db
from bhuktani.cli.display import Times, print_json, tell
from bhuktani.cli.paging import Page, pages, tell_more
from bhuktani.settings import Settings
from bhuktani.store import Database, keyset

callbacks_app = typer.Typer(
    help="Delivery callbacks and events: attempts and retries.", no_args_is_help=True
)


CALLBACKS_PAGE = 100


@callbacks_app.command("list")
def callbacks_list(
    reference: Annotated[str | None, typer.Option(help="Only this payment reference.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="Callbacks on a page.")
    ] = CALLBACKS_PAGE,
    cursor: CursorOption = None,
    every: AllOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False,
    utc: UtcOption = False,
) -> None:
    """Show callbacks (DLRs and events), newest first, and every attempt made to deliver
    them, a page at a time: a page ends with the command of the next one ("more: ...")."""
    from bhuktani.callbacks import outbox

    async def read(db: Database, _: Settings) -> Page[dict[str, object]]:
        async def fetch(
            after: keyset.Position | None,
        ) -> tuple[list[dict[str, object]], str | None]:
            return await outbox.page(db, reference, limit, after)

        return await pages(fetch, cursor=cursor, every=every)

    page = with_db(read)
    words = ["bhuktani", "callbacks", "list"]
    if reference is not None:
        words += ["--reference", reference]
    if limit != CALLBACKS_PAGE:
        words += ["--limit", str(limit)]
    if as_json:
        print_json(page.rows)
        tell_more([*words, "--json"], page, as_json=True)
        return
    console.print(_table(page.rows, Times(utc)))
    tell_more([*words, "--utc"] if utc else words, page, as_json=False)


def _table(rows: list[dict[str, object]], times: Times) -> Table:
    # Folded, never cut: an operator needs all of a reference or an event's type.
    table = Table()
    for column in ("id", "merchant", "env", "type", "reference", "status", "attempts"):
        table.add_column(column, overflow="fold")
    for column in ("next", "last"):
        table.add_column(times.header(column), overflow="fold")
    for row in rows:
        attempts = row["attempt_log"]
        assert isinstance(attempts, list)
        last = attempts[-1] if attempts else None
        last_text = "-"
        if last is not None:
            outcome = last["http_status"] or last["error"]
            last_text = f"{times.cell(last['attempted_ms'])} {outcome} {last['latency_ms']}ms"
        next_ms = row["next_attempt_ms"]
        table.add_row(
            str(row["id"]),
            str(row["merchant_id"]),
            str(row["env"]),
            str(row["event_type"]),
            "-" if row["reference"] is None else str(row["reference"]),
            str(row["status"]),
            str(row["attempts"]),
            times.cell(next_ms) if isinstance(next_ms, int) else "-",
            last_text,
        )
    return table


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
        tell(f"no callback {callback_id}")
        raise typer.Exit(1)
    console.print(f"callback {callback_id} is due now")
