"""Keyset cursors: opaque, read back exactly, and nothing else read as one."""

from __future__ import annotations

import pytest

from bhuktani.store import keyset


def test_a_cursor_is_opaque_and_read_back() -> None:
    cursor = keyset.encode(1_720_000_000_123, 987_654_321)
    assert "1720000000123" not in cursor and "=" not in cursor
    assert keyset.decode(cursor) == (1_720_000_000_123, 987_654_321)
    assert keyset.decode(keyset.encode(-5, 0)) == (-5, 0)


@pytest.mark.parametrize("text", ["", "@@@", "MTIz", "bm90OmFudW1iZXI", "A" * 100, "é"])
def test_what_this_module_did_not_write_is_no_cursor(text: str) -> None:
    assert keyset.decode(text) is None


def test_the_next_cursor_is_the_last_shown_row_when_one_more_came_back() -> None:
    rows = [{"id": n, "created_ms": 1000 - n} for n in range(4)]
    assert keyset.next_cursor(rows, 3, "created_ms") == keyset.encode(998, 2)
    assert keyset.next_cursor(rows, 4, "created_ms") is None
    assert keyset.next_cursor(rows[:3], 3, "id") is None
