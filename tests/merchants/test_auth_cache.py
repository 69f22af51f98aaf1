"""The token check is remembered for a few seconds (BHUKTANI_AUTH_CACHE_S); revoking a
token or disabling a merchant still takes effect within that window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from bhuktani.api.app import create_app
from bhuktani.merchants import service as merchants
from bhuktani.store import Database
from tests.support import KEY, fast_settings, new_merchant

WINDOW_S = 0.5


@pytest.fixture
async def cached(db_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Database]]:
    app = create_app(fast_settings(db_url, auth_cache_s=WINDOW_S))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http, app.state.gateway.db


async def balance_code(http: httpx.AsyncClient, token: str) -> str:
    response = await http.get("/api/balance", params={"token": token})
    return "ok" if response.status_code == 200 else str(response.json()["error_code"])


async def test_revocation_takes_effect_within_the_window(
    cached: tuple[httpx.AsyncClient, Database],
) -> None:
    http, db = cached
    merchant = await new_merchant(db)
    assert await balance_code(http, merchant.test_token) == "ok"
    assert await merchants.revoke_token(db, merchant.test_token, key=KEY)
    await asyncio.sleep(WINDOW_S + 0.05)
    assert await balance_code(http, merchant.test_token) == "1003"


async def test_disabling_a_merchant_takes_effect_within_the_window(
    cached: tuple[httpx.AsyncClient, Database],
) -> None:
    http, db = cached
    merchant = await new_merchant(db)
    assert await balance_code(http, merchant.test_token) == "ok"
    assert await merchants.set_status(db, merchant.merchant_id, "disabled")
    await asyncio.sleep(WINDOW_S + 0.05)
    assert await balance_code(http, merchant.test_token) == "1006"


async def test_the_cache_spares_the_database_inside_the_window(
    cached: tuple[httpx.AsyncClient, Database],
) -> None:
    """Inside the window the answer comes from the cache: the proof that it caches."""
    http, db = cached
    merchant = await new_merchant(db)
    assert await balance_code(http, merchant.test_token) == "ok"
    assert await merchants.revoke_token(db, merchant.test_token, key=KEY)
    assert await balance_code(http, merchant.test_token) == "ok", "still cached"


async def test_unknown_tokens_are_refused_with_or_without_the_cache(
    cached: tuple[httpx.AsyncClient, Database],
) -> None:
    http, _ = cached
    for _ in range(2):
        assert await balance_code(http, "TEST:" + "x" * 20) == "1002"
