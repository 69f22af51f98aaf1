"""`bhuktani settle ISP --date D`: the ISP's report of the payments it applied on a day,
compared with our Success payments (books/settlement.py says which day a payment is of).
Every run is stored in `settlements`; mismatches are audited. Exit 0 when clean, 2 when
there are mismatches, 1 when the comparison could not be made (no ISP system, no answer,
an unreadable report)."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

import typer
from rich.table import Table

from bhuktani import audit
from bhuktani.books import settlement
from bhuktani.cli.common import console, with_runtime
from bhuktani.cli.display import rupees as format_rupees
from bhuktani.cli.display import shown
from bhuktani.clock import nepal_day, now_ms
from bhuktani.domain import Env
from bhuktani.isps.base import ProviderUnavailable, ReportUnreadable
from bhuktani.runtime import Gateway

CLEAN, FAILED, MISMATCHES = 0, 1, 2


class _Refused(Exception):
    """The comparison cannot be made; the text says why, for the operator."""


def settle_command(
    isp: Annotated[
        str, typer.Argument(help="The ISP's slug, as a payment names it (bhuktani payment show).")
    ],
    day: Annotated[str, typer.Option("--date", help="The ISP's day, YYYY-MM-DD (Nepal time).")],
    # LIVE by default, alone among the commands: a settlement compares with an ISP's own
    # report, which only LIVE has (TEST's "ISP" is the sandbox), and it moves no money.
    env: Annotated[
        str, typer.Option("--env", help="live (the ISP system) or test (the sandbox).")
    ] = "live",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    operator: Annotated[
        str | None, typer.Option("--operator", help="Who runs it; defaults to the OS user.")
    ] = None,
) -> None:
    """Compare an ISP's settlement report of a day with our Success payments: exit 0 when
    they agree, 2 on mismatches, 1 when the comparison could not be made."""
    try:
        the_day = _day(day)
        the_env = _env(env)
        who = audit.operator_of(operator)
        group = settlement.isp_group(isp)
        if group is None:
            raise _Refused(f"{isp!r} is no ISP of ours")
        result = with_runtime(lambda gateway: _settle(gateway, the_env, group, isp, the_day, who))
    except (_Refused, ValueError) as exc:
        typer.echo(shown(f"settle: {exc}"), err=True)
        raise typer.Exit(FAILED) from None
    if as_json:
        typer.echo(json.dumps(result))
    else:
        _print(result)
    raise typer.Exit(CLEAN if result["clean"] else MISMATCHES)


def _day(text: str) -> date:
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise _Refused(f"--date must be a day, YYYY-MM-DD, not {text!r}")


def _env(text: str) -> Env:
    try:
        return Env(text.lower())
    except ValueError:
        raise _Refused("--env must be live or test") from None


async def _settle(
    gateway: Gateway, env: Env, group: str, isp: str, day: date, operator: str
) -> dict[str, Any]:
    provider = gateway.provider_of(env, group)
    if provider is None:
        variable = group.upper().replace("-", "_")
        raise _Refused(f"no ISP system for {group} (BHUKTANI_ISPS__{variable}__BASE_URL)")
    try:
        outcome = await settlement.compare(
            gateway.db, provider, env, isp, day, today=nepal_day(now_ms())
        )
    except (ProviderUnavailable, ReportUnreadable) as exc:
        raise _Refused(f"{isp} on {day.isoformat()}: {exc}") from None
    stored_id = await settlement.store(gateway.db, outcome, operator=operator, first_only=False)
    return {"id": stored_id, **outcome.to_json()}


def _print(result: dict[str, Any]) -> None:
    counts = result["counts"]
    console.print(
        f"Settlement {result['id']}: {result['isp']} ({result['env']}) on {result['date']}:"
        f" the ISP reported {result['reported']['count']} payments,"
        f" Rs {format_rupees(result['reported']['total_paisa'])}"
    )
    summary = Table.grid(padding=(0, 2))
    summary.add_row(
        "matched", str(counts["matched"]), f"Rs {format_rupees(result['matched']['total_paisa'])}"
    )
    for name in ("ours_only", "theirs_only", "amount_mismatches"):
        summary.add_row(name.replace("_", " "), str(counts[name]), "")
    console.print(summary)
    _listing(
        "ours only: Success here, not applied there",
        result["ours_only"],
        ("payment_id", "merchant_id", "reference", "amount_paisa", "created_at"),
    )
    _listing(
        "theirs only: applied there, not Success here",
        result["theirs_only"],
        ("payment_id", "ours_state", "merchant_id", "reference", "amount_paisa", "applied_at"),
    )
    _listing(
        "amount mismatches",
        result["amount_mismatches"],
        ("payment_id", "merchant_id", "reference", "ours_paisa", "theirs_paisa"),
    )
    _listing(
        "across midnight: counted in the run of the ISP's day",
        result["across_midnight"],
        ("payment_id", "reference", "our_day", "isp_day"),
    )
    console.print("clean" if result["clean"] else f"{result['mismatches']} mismatches")


def _listing(title: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    if not rows:
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(column, row[column]) for column in columns))
    console.print(table)


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column.endswith("_paisa"):
        return f"Rs {format_rupees(int(value))}"
    return str(value)
