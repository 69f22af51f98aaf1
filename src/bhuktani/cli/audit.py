"""`bhuktani audit`: the audit log, newest first, a page at a time. Times are Nepal time,
labelled, in the table; ISO-8601 with their offset in JSON."""

from __future__ import annotations

import shlex
from datetime import datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from bhuktani import audit
from bhuktani.cli.common import UtcOption, console, with_db
from bhuktani.cli.display import Times, print_json
from bhuktani.clock import NEPAL
from bhuktani.store import Database


def nepal_time(at_ms: int) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, tz=NEPAL)


def as_json_entry(entry: dict[str, Any]) -> dict[str, Any]:
    shown = {key: value for key, value in entry.items() if key != "at_ms"}
    return {"at": nepal_time(entry["at_ms"]).isoformat(timespec="milliseconds"), **shown}


def next_page_command(
    last_id: int,
    merchant: int | None,
    action: str | None,
    limit: int,
    as_json: bool,
    utc: bool = False,
) -> str:
    """The command that shows the next page: the same filters, older than the last id."""
    words = ["bhuktani", "audit"]
    if as_json:
        words.append("--json")
    if merchant is not None:
        words += ["--merchant", str(merchant)]
    if action is not None:
        words += ["--action", action]
    if limit != audit.DEFAULT_LIMIT:
        words += ["--limit", str(limit)]
    if utc:
        words.append("--utc")
    words += ["--before", str(last_id)]
    return shlex.join(words)


def audit_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
    merchant: Annotated[
        int | None, typer.Option("--merchant", help="Only this merchant's entries.")
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(
            "--action", help="Only this action or those under it: 'token' or 'token.revoke'."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=audit.MAX_LIMIT, help="Entries on the page.")
    ] = audit.DEFAULT_LIMIT,
    before: Annotated[
        int | None,
        typer.Option("--before", min=1, help="Entries older than this id: the next page."),
    ] = None,
    utc: UtcOption = False,
) -> None:
    """The audit log, newest first: who did what, to which merchant, when and with what.
    A full page ends with the command that shows the next one."""

    async def page(db: Database, _: object) -> tuple[list[dict[str, Any]], bool]:
        entries = await audit.listing(
            db, merchant_id=merchant, action=action, before_id=before, limit=limit
        )
        # Asked of the database rather than guessed from a full page, so that a page
        # that happens to hold the last entries says so.
        more = len(entries) == limit and bool(
            await audit.listing(
                db, merchant_id=merchant, action=action, before_id=entries[-1]["id"], limit=1
            )
        )
        return entries, more

    entries, more = with_db(page)
    following = (
        next_page_command(entries[-1]["id"], merchant, action, limit, as_json, utc)
        if more
        else None
    )
    if as_json:
        print_json([as_json_entry(entry) for entry in entries])
        if following is not None:
            # On stderr, so that stdout stays one JSON document.
            typer.echo(f"more entries: {following}", err=True)
        return
    if not entries:
        typer.echo("no entries", err=True)
        return
    console.print(table_of(entries, Times(utc)))
    if following is not None:
        console.print(f"more entries: {following}")


def table_of(entries: list[dict[str, Any]], times: Times | None = None) -> Table:
    """Every value whole: a narrow terminal folds a cell onto more lines, never cuts it.
    What an entry acted on goes under its action, its values under "details", one a line,
    so that the table fits 80 columns."""
    times = times or Times()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("at", no_wrap=True)
    table.add_column("operator", overflow="fold")
    table.add_column("action", overflow="fold")
    table.add_column("details", overflow="fold")
    for entry in entries:
        table.add_row(
            str(entry["id"]),
            times.labelled(entry["at_ms"]),
            entry["operator"],
            "\n".join([entry["action"], *audit.acted_on(entry)]),
            "\n".join(audit.detail_lines(entry)),
        )
    return table
