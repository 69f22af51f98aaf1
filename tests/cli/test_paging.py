"""Pages of a prefix listing (cli/paging.py): after a cursor, every row once, whatever the
page size; a cap that hides rows is said, never silent."""

from __future__ import annotations

import asyncio

import pytest
import typer

from bhuktani.cli.paging import Order, Page, every_row, page_of, parse_cursor

NEWEST_FIRST: Order[int] = Order(row_id=lambda r: r, place=lambda r: r, newest_first=True)


def prefix_of(rows: list[int]):  # type: ignore[no-untyped-def]
    """A listing of `rows` in their order that reads the first `count`, and counts reads."""
    reads: list[int] = []

    async def fetch(count: int) -> list[int]:
        reads.append(count)
        return rows[:count]

    return fetch, reads


def walk(rows: list[int], size: int, cap: int | None = None) -> tuple[list[int], list[Page[int]]]:
    fetch, _ = prefix_of(rows)
    seen: list[int] = []
    pages: list[Page[int]] = []
    cursor = None
    for _ in range(len(rows) + 2):
        page = asyncio.run(page_of(fetch, NEWEST_FIRST, cursor=cursor, size=size, cap=cap))
        pages.append(page)
        seen += page.rows
        if page.next_cursor is None:
            break
        cursor = parse_cursor(page.next_cursor)
    return seen, pages


@pytest.mark.parametrize("size", [1, 2, 3, 7, 10, 11, 50])
def test_pages_reach_every_row_once(size: int) -> None:
    rows = list(range(1000, 990, -1))
    seen, pages = walk(rows, size)
    assert seen == rows
    assert all(len(page.rows) <= size for page in pages)
    assert not any(page.capped for page in pages)


def test_a_cap_that_hides_rows_is_said_on_the_last_page() -> None:
    rows = list(range(100, 0, -1))
    seen, pages = walk(rows, 7, cap=20)
    assert seen == rows[:20]
    assert pages[-1].capped and pages[-1].next_cursor is None
    assert not any(page.capped for page in pages[:-1])
    # Short of its cap, the listing is read to its end: nothing is hidden.
    _, short = walk(rows[:19], 7, cap=20)
    assert not short[-1].capped


def test_a_page_starts_after_the_place_of_a_row_that_left_the_listing() -> None:
    fetch, _ = prefix_of([10, 9, 8, 7, 6, 5])
    first = asyncio.run(page_of(fetch, NEWEST_FIRST, cursor=None, size=2))
    assert first.rows == [10, 9] and first.next_cursor is not None
    # Row 9 is decided (it leaves a "pending" listing) before the next page is read.
    fetch, _ = prefix_of([10, 8, 7, 6, 5])
    following = asyncio.run(
        page_of(fetch, NEWEST_FIRST, cursor=parse_cursor(first.next_cursor), size=2)
    )
    assert following.rows == [8, 7]


def test_new_rows_ahead_of_the_cursor_do_not_shift_the_pages() -> None:
    fetch, _ = prefix_of([10, 9, 8, 7])
    first = asyncio.run(page_of(fetch, NEWEST_FIRST, cursor=None, size=2))
    fetch, _ = prefix_of([12, 11, 10, 9, 8, 7])
    following = asyncio.run(
        page_of(fetch, NEWEST_FIRST, cursor=parse_cursor(first.next_cursor), size=2)
    )
    assert following.rows == [8, 7] and following.next_cursor is None


def test_every_row_reads_a_prefix_twice_as_long_until_the_end() -> None:
    fetch, reads = prefix_of(list(range(50)))
    page = asyncio.run(every_row(fetch, start=8))
    assert page.rows == list(range(50)) and not page.capped
    assert reads == [8, 16, 32, 64]
    fetch, _ = prefix_of(list(range(50)))
    assert asyncio.run(every_row(fetch, start=8, cap=40)).capped


@pytest.mark.parametrize("text", ["", "x", "MTIz", "bm90OmFudW1iZXI", "A" * 100])
def test_a_cursor_this_module_did_not_write_is_refused(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_cursor(text)
