"""What the operator's commands print. Names, URLs, references and ISP texts are data:
shown as written, never read as Rich markup (`x[/red]` crashed `merchant list`), emoji
codes or terminal control sequences (an ESC in a merchant's name could rewrite the
operator's screen)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bhuktani import money
from bhuktani.clock import ZONE_LABELS, ms_of, wall_time

# C0 controls but tab and newline, DEL, and the C1 controls (ESC's 8-bit twins).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """The text with each control character written as its escape, `\\x1b`."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class DataConsole(Console):
    """A console whose every string, table cells included, is escaped as `shown`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(shown(text), **kwargs)


# Amounts: one way for every command, the dashboard's (web/pages.py `rupees`): plain
# thousands, "1,00,000.00" never, right-aligned so that the paisa stand in one column.


def rupees(amount_paisa: int | None) -> str:
    """Paisa as the tables show rupees: "1,695.00"; "-" for none."""
    if amount_paisa is None:
        return "-"
    sign = "-" if amount_paisa < 0 else ""
    whole, part = divmod(abs(amount_paisa), money.PAISA_PER_RUPEE)
    return f"{sign}{whole:,}.{part:02d}"


def paisa_of(rupees_value: object) -> int | None:
    """The paisa of an amount as a view gives it: a float (100.5) or a text ("100.50")."""
    if rupees_value is None:
        return None
    cents = Decimal(str(rupees_value)) * money.PAISA_PER_RUPEE
    assert cents == cents.to_integral_value(), rupees_value
    return int(cents)


def add_amount_column(table: Table, header: str) -> None:
    # Folded in a narrow terminal, never cut: a lost digit is a wrong amount.
    table.add_column(header, justify="right", overflow="fold")


@dataclass(frozen=True)
class Times:
    """How a command shows instants: Nepal time unless --utc, the zone in the header."""

    utc: bool = False

    def header(self, name: str) -> str:
        return f"{name} ({ZONE_LABELS[self.utc]})"

    def cell(self, at: int | str | None) -> str:
        """An instant as milliseconds or as an ISO-8601 text with its offset."""
        if at is None:
            return "-"
        at_ms = ms_of(at) if isinstance(at, str) else at
        return wall_time(at_ms, utc=self.utc)

    def labelled(self, at: int | str | None) -> str:
        """The instant with its zone, for a cell whose header cannot carry it."""
        return "-" if at is None else f"{self.cell(at)} {ZONE_LABELS[self.utc]}"

    def add_column(self, table: Table, name: str) -> None:
        table.add_column(self.header(name), overflow="fold")


def print_json(value: object) -> None:
    """The one JSON document of a --json run, alone on stdout."""
    typer.echo(json.dumps(value))


def tell(text: str) -> None:
    """A message for the operator, never data: on stderr, so that stdout stays parseable."""
    typer.echo(shown(text), err=True)
