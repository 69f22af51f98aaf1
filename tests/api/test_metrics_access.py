"""GET /metrics shares the merchants' port: it answers the operator's scraper, with
`Authorization: Bearer $BHUKTANI_METRICS_TOKEN`, and nobody else. Unset, it is not served."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bhuktani.api.app import create_app
from bhuktani.store.migrate import upgrade
from tests.support import METRICS_AUTH, METRICS_TOKEN, fast_settings, new_merchant


@pytest.fixture
async def app_with(tmp_path: Path) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """The app with the metrics token set (`on`) and unset (`off`)."""
    url = f"sqlite:///{tmp_path}/metrics.db"
    upgrade(url)
    clients: dict[str, httpx.AsyncClient] = {}
    on = create_app(fast_settings(url, metrics_token=METRICS_TOKEN))
    off = create_app(fast_settings(url, metrics_token=""))
    async with on.router.lifespan_context(on), off.router.lifespan_context(off):
        for name, app in (("on", on), ("off", off)):
            clients[name] = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gateway"
            )
        clients["on"].gateway = on.state.gateway  # type: ignore[attr-defined]
        try:
            yield clients
        finally:
            for client in clients.values():
                await client.aclose()


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] is False and body["state"] == "Error"
    assert body["error_code"] == code, body
    assert "bhuktani_" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_metrics_with_the_bearer_token_are_served(
    app_with: dict[str, httpx.AsyncClient],
) -> None:
    response = await app_with["on"].get("/metrics", headers=METRICS_AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "bhuktani_payments_total" in response.text
    assert response.headers["cache-control"] == "no-store"


async def test_metrics_without_a_credential_are_refused_401(
    app_with: dict[str, httpx.AsyncClient],
) -> None:
    response = await app_with["on"].get("/metrics")
    assert_refused(response, 401, "1001")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {METRICS_TOKEN}x", f"Bearer {METRICS_TOKEN[:-1]}", f"Token {METRICS_TOKEN}"],
    ids=["longer", "shorter", "merchant_scheme"],
)
async def test_metrics_with_a_wrong_credential_are_refused_401(
    app_with: dict[str, httpx.AsyncClient], authorization: str
) -> None:
    response = await app_with["on"].get("/metrics", headers={"authorization": authorization})
    assert_refused(response, 401, "1002" if authorization.startswith("Bearer") else "1001")


async def test_a_merchant_token_does_not_read_metrics(
    app_with: dict[str, httpx.AsyncClient],
) -> None:
    merchant = await new_merchant(app_with["on"].gateway.db)  # type: ignore[attr-defined]
    for authorization in (f"Bearer {merchant.test_token}", f"Token {merchant.test_token}"):
        response = await app_with["on"].get("/metrics", headers={"authorization": authorization})
        assert response.status_code == 401, authorization
    response = await app_with["on"].get("/metrics", params={"token": merchant.test_token})
    assert response.status_code == 401


async def test_without_a_metrics_token_metrics_are_not_served(
    app_with: dict[str, httpx.AsyncClient],
) -> None:
    for headers in ({}, METRICS_AUTH, {"authorization": "Bearer "}):
        response = await app_with["off"].get("/metrics", headers=headers)
        assert_refused(response, 404, "1008")
