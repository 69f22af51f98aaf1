"""The iterators walk every page, and stop loudly at their bound instead of returning a
list cut short."""

from __future__ import annotations

import httpx
import pytest
from bhuktani_client import AsyncClient, Client, TooManyPages
from bhuktani_client import async_client as async_module
from bhuktani_client import client as client_module

PAGES = 3


def endless(path: str) -> httpx.MockTransport:
    """A gateway that always has one more page of one entry."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == path
        page = int(request.url.params.get("cursor") or 0)
        entry = {
            "id": page,
            "reference": f"r{page}",
            "response_id": page,
            "amount": 100.0,
            "reason": "not received",
            "status": "open",
            "created_at": "2026-12-07T10:00:00+05:45",
            "resolved_at": None,
            "note": None,
            "refund_amount": None,
        }
        return httpx.Response(200, json={"results": [entry], "next_cursor": str(page + 1)})

    return httpx.MockTransport(handler)


def test_an_iterator_past_its_bound_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MAX_PAGES", PAGES)
    with Client("http://gateway", "TEST:t", transport=endless("/api/disputes/")) as client:
        seen: list[int] = []
        with pytest.raises(TooManyPages):
            seen.extend(dispute.id for dispute in client.iter_disputes())
    assert seen == list(range(PAGES))


async def test_the_async_iterator_past_its_bound_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(async_module, "MAX_PAGES", PAGES)
    transport = endless("/api/disputes/")
    async with AsyncClient("http://gateway", "TEST:t", transport=transport) as client:
        seen: list[int] = []
        with pytest.raises(TooManyPages):
            async for dispute in client.iter_disputes():
                seen.append(dispute.id)
    assert seen == list(range(PAGES))
