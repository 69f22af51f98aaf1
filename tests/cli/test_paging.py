"""The CLI's lists walk keyset pages (store/keyset.py, cli/paging.py): after a cursor,
every row once whatever the page size; rows added or decided during the walk never shift
the pages after the cursor; --all walks every page; a cursor nobody printed is refused."""

from __future__ import annotations

import pytest
import typer

from bhuktani.books import credit_requests as requests
from bhuktani.cli.paging import Page, pages, parse_cursor
from bhuktani.merchants import service as merchants
from bhuktani.store import Database, keyset
from tests.books.test_credit_requests import ask_directly
from tests.support import new_merchant

AT_MS = 1_780_000_000_000


async def walk_requests(db: Database, merchant_id: int, size: int) -> list[int]:
    seen: list[int] = []
    after: keyset.Position | None = None
    for _ in range(100):
        rows, following = await requests.page(
            db, status="pending", merchant_id=merchant_id, limit=size, after=after
        )
        assert len(rows) <= size
        seen += [row["id"] for row in rows]
        if following is None:
            return seen
        after = keyset.decode(following)
    raise AssertionError("no last page")


@pytest.mark.parametrize("size", [1, 2, 3, 7])
async def test_credit_request_pages_reach_every_request_once(db: Database, size: int) -> None:
    merchant = await new_merchant(db)
    # Some at one millisecond (a burst), some later: the order is (time, id).
    times = [AT_MS, AT_MS, AT_MS, AT_MS + 5, AT_MS + 5, AT_MS + 9, AT_MS + 20]
    ids = [await ask_directly(db, merchant.merchant_id, "test", 100, at) for at in times]
    assert await walk_requests(db, merchant.merchant_id, size) == ids


async def test_a_request_decided_or_added_during_the_walk_shifts_no_page(db: Database) -> None:
    merchant = await new_merchant(db)
    ids = [await ask_directly(db, merchant.merchant_id, "test", 100, AT_MS + n) for n in range(6)]
    first, following = await requests.page(
        db, status="pending", merchant_id=merchant.merchant_id, limit=2
    )
    assert [row["id"] for row in first] == ids[:2] and following is not None
    # The first page's second request is decided (it leaves "pending"), and one is asked
    # for later than all: the next page starts right after the first, nothing skipped.
    await requests.reject(db, ids[1], operator="test", note="duplicate")
    late = await ask_directly(db, merchant.merchant_id, "test", 100, AT_MS + 100)
    rest, _ = await requests.page(
        db,
        status="pending",
        merchant_id=merchant.merchant_id,
        limit=10,
        after=keyset.decode(following),
    )
    assert [row["id"] for row in rest] == [*ids[2:], late]


async def test_merchant_pages_reach_every_merchant_once(db: Database) -> None:
    made = [(await new_merchant(db, name=f"paged {n}")).merchant_id for n in range(5)]
    seen: list[int] = []
    after: keyset.Position | None = None
    for _ in range(1000):
        rows, following = await merchants.page(db, limit=2, after=after)
        seen += [int(str(row["id"])) for row in rows]
        if following is None:
            break
        after = keyset.decode(following)
    assert [m for m in seen if m in made] == made
    assert len(seen) == len(set(seen)) == len(await merchants.list_all(db))


async def test_all_walks_every_page_and_a_page_names_the_next() -> None:
    rows = list(range(10))

    async def fetch(after: keyset.Position | None) -> tuple[list[int], str | None]:
        start = 0 if after is None else after[1] + 1
        shown = rows[start : start + 3]
        more = start + 3 < len(rows)
        return shown, keyset.encode(shown[-1], shown[-1]) if more else None

    assert await pages(fetch, cursor=None, every=True) == Page(rows, None)
    first = await pages(fetch, cursor=None, every=False)
    assert first.rows == [0, 1, 2] and first.next_cursor is not None
    second = await pages(fetch, cursor=first.next_cursor, every=False)
    assert second.rows == [3, 4, 5]


@pytest.mark.parametrize("text", ["", "x", "MTIz", "bm90OmFudW1iZXI", "A" * 100])
def test_a_cursor_this_module_did_not_write_is_refused(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_cursor(text)
