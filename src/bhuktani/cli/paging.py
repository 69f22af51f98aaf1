"""Pages of the listings that read a prefix: the first N rows of a stable order (callbacks
newest first, disputes newest first, credit requests oldest first), with no way to start
after a row. A page after a cursor is read from a prefix long enough to hold it, and a
listing with a cap of its own says when rows lie past it: never a silent cap.

The cursor names the page's last row by its id and its place in the order, so that a
page starts right after it, or, if that row has left the listing (a request decided
since), after its place."""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import typer

from bhuktani.cli.display import shown

R = TypeVar("R")
# Doubling from 2 rows: 2^40 rows is past any table of ours.
MAX_ROUNDS = 40
_CURSOR = re.compile(r"([0-9]{1,19}):(-?[0-9]{1,19})")


@dataclass(frozen=True)
class Cursor:
    row_id: int
    # The row's place in the order (its time, or its id).
    place: tuple[int, int]

    def text(self) -> str:
        raw = f"{self.row_id}:{self.place[0]}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_cursor(text: str | None) -> Cursor | None:
    """The cursor a 'more:' line printed; a bad one is refused as the option's error."""
    if text is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    found = _CURSOR.fullmatch(raw) if len(text) <= 64 else None
    if found is None:
        raise typer.BadParameter("not a cursor this command printed", param_hint="--cursor")
    row_id = int(found[1])
    return Cursor(row_id, (int(found[2]), row_id))


@dataclass(frozen=True)
class Page(Generic[R]):
    rows: list[R]
    next_cursor: str | None
    # The listing reached its cap: rows past it, if any (it cannot tell), no page reaches.
    capped: bool = False


@dataclass(frozen=True)
class Order(Generic[R]):
    """How a listing orders its rows: by `place` then id, newest first or oldest first."""

    row_id: Callable[[R], int]
    place: Callable[[R], int]
    newest_first: bool

    def key(self, row: R) -> tuple[int, int]:
        return self.place(row), self.row_id(row)

    def after(self, rows: Sequence[R], cursor: Cursor | None) -> list[R]:
        if cursor is None:
            return list(rows)
        for index, row in enumerate(rows):
            if self.row_id(row) == cursor.row_id:
                return list(rows[index + 1 :])
        # The cursor's row has left the listing: the rows past its place.
        if self.newest_first:
            return [row for row in rows if self.key(row) < cursor.place]
        return [row for row in rows if self.key(row) > cursor.place]


async def page_of(
    fetch: Callable[[int], Awaitable[list[R]]],
    order: Order[R],
    *,
    cursor: Cursor | None,
    size: int,
    cap: int | None = None,
) -> Page[R]:
    """The `size` rows after the cursor, read from a prefix twice as long each round
    until it holds them and one more (which tells that another page follows)."""
    assert size > 0, size
    wanted = size + 1
    limit = wanted if cursor is None else 2 * wanted
    for _ in range(MAX_ROUNDS):
        if cap is not None:
            limit = min(limit, cap)
        rows = await fetch(limit)
        ended = len(rows) < limit
        rest = order.after(rows, cursor)
        if len(rest) >= wanted or ended or limit == cap:
            break
        limit *= 2
    else:
        raise AssertionError(f"no page after {MAX_ROUNDS} rounds")
    shown = rest[:size]
    more = len(rest) > size
    following = None
    if more:
        last = shown[-1]
        following = Cursor(order.row_id(last), (order.place(last), order.row_id(last))).text()
    return Page(shown, following, capped=not more and not ended)


async def every_row(
    fetch: Callable[[int], Awaitable[list[R]]], *, start: int, cap: int | None = None
) -> Page[R]:
    """All the listing holds, in one prefix read twice as long each round (--all)."""
    limit = start
    for _ in range(MAX_ROUNDS):
        if cap is not None:
            limit = min(limit, cap)
        rows = await fetch(limit)
        if len(rows) < limit:
            return Page(rows, None)
        if limit == cap:
            return Page(rows, None, capped=True)
        limit *= 2
    raise AssertionError(f"no end after {MAX_ROUNDS} rounds")


def tell_more(words: Sequence[str], page: Page[R], *, as_json: bool, narrow: str) -> None:
    """After a page: the command of the next one, if any ("more: ... --cursor X"), and
    when the listing stopped at its cap, that it did. On stdout under a table, on stderr
    under JSON (stdout stays one document)."""
    lines = []
    if page.next_cursor is not None:
        lines.append("more: " + shlex.join([*words, "--cursor", page.next_cursor]))
    if page.capped:
        lines.append(
            f"this listing reads no further: any rows past these are not shown; narrow with"
            f" {narrow}"
        )
    for line in lines:
        typer.echo(shown(line), err=as_json)
