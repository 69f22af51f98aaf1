"""The CLI's lists, a page at a time: each listing reads the page after a cursor (a keyset,
store/keyset.py) and says where the next begins; a page ends with the command that shows
it ("more: ..."), and --all walks every page. Nothing is cut without a word."""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import typer

from bhuktani.cli.display import shown
from bhuktani.store import keyset

R = TypeVar("R")
# --all walks at most this many pages: a bound on the loop, far past any table of ours.
MAX_PAGES = 1_000_000


@dataclass(frozen=True)
class Page(Generic[R]):
    rows: list[R]
    next_cursor: str | None


def parse_cursor(text: str | None) -> keyset.Position | None:
    """The position a 'more:' line's cursor names; a bad one is refused as the option's."""
    if text is None:
        return None
    position = keyset.decode(text)
    if position is None:
        raise typer.BadParameter("not a cursor this command printed", param_hint="--cursor")
    return position


Fetch = Callable[[keyset.Position | None], Awaitable[tuple[list[R], str | None]]]


async def pages(
    fetch: Fetch[R],
    *,
    cursor: str | None,
    every: bool,
    each: Callable[[list[R]], None] | None = None,
) -> Page[R]:
    """The page after `cursor`, or with `every` all the pages from there: gathered, or
    given to `each` as they come (a table a page, nothing held)."""
    after = parse_cursor(cursor)
    if not every:
        rows, following = await fetch(after)
        return Page(rows, following)
    found: list[R] = []
    for _ in range(MAX_PAGES):
        rows, following = await fetch(after)
        if each is None:
            found += rows
        else:
            each(rows)
        if following is None:
            return Page(found, None)
        after = keyset.decode(following)
    raise AssertionError(f"more than {MAX_PAGES} pages")


def tell_more(words: Sequence[str], page: Page[R], *, as_json: bool) -> None:
    """After a page: the command of the next one, if any ("more: ... --cursor X"). On
    stdout under a table, on stderr under JSON (stdout stays one document)."""
    if page.next_cursor is not None:
        line = "more: " + shlex.join([*words, "--cursor", page.next_cursor])
        typer.echo(shown(line), err=as_json)
