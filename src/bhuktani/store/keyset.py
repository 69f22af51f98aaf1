"""Keyset pages: a listing reads the rows after where the previous page ended, by the
last row's place in the order (a time or an id) and its id, never by OFFSET. Rows added or
decided while someone walks never shift the pages after the cursor, and a deep page costs
what the first does. The cursor is that pair, opaque to whoever holds it."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from bhuktani.store.base import Row

_CURSOR = re.compile(r"(-?[0-9]{1,19}):([0-9]{1,19})")
_BIGINT = 2**63
MAX_CURSOR_CHARS = 64

Position = tuple[int, int]


def encode(place: int, row_id: int) -> str:
    raw = f"{place}:{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str) -> Position | None:
    """The position a cursor names, or None if it is not one this module wrote."""
    if not text or len(text) > MAX_CURSOR_CHARS or not text.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    found = _CURSOR.fullmatch(raw)
    if found is None:
        return None
    place, row_id = int(found[1]), int(found[2])
    if not (-_BIGINT <= place < _BIGINT and row_id < _BIGINT):
        return None
    return place, row_id


def next_cursor(rows: Sequence[Row], limit: int, place: str) -> str | None:
    """For a page read with one row more than its limit: the cursor after its last row, or
    None when that extra row did not come back (the last page)."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return encode(int(last[place]), int(last["id"]))
