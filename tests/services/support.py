"""What the services' tests share: the document's answer compared key by key and JSON type
by JSON type, fresh references, balances and states read over the API, refusals, and a
group's LIVE ISP system served by isp-sim."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from bhuktani.isps.adapter import IspHttpProvider
from bhuktani.sandbox import isp_sim
from tests.conftest import AppClient
from tests.seeds import shape_differences

SIM_KEY = "services-sim-key"


def same_shape(answer: dict[str, Any], documented: dict[str, Any], typed_only: set[str]) -> None:
    """The documented answer, key by key and JSON type by JSON type; values compared but
    for the per-call ones."""
    assert shape_differences(documented, answer) == [], answer
    assert {k: v for k, v in answer.items() if k not in typed_only} == {
        k: v for k, v in documented.items() if k not in typed_only
    }


def fresh_reference() -> str:
    return f"ref-{uuid.uuid4().hex}"


def body(token: str, example: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"token": token, "reference": fresh_reference(), **example, **fields}


async def balance(client: httpx.AsyncClient, token: str) -> float:
    answer = await client.get("/api/balance", headers={"Authorization": f"Token {token}"})
    assert answer.status_code == 200, answer.text
    available: float = answer.json()["credits_available"]
    return available


async def balance_paisa(client: httpx.AsyncClient, token: str) -> int:
    return round(await balance(client, token) * 100)


async def state_of(client: httpx.AsyncClient, token: str, reference: str) -> str:
    response = await client.get(
        "/api/service/status/", params={"token": token, "reference": reference}
    )
    assert response.status_code == 200, response.text
    state: str = response.json()["state"]
    return state


def assert_refused(response: httpx.Response, code: str, field: str | None = None) -> None:
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error_code"] == code, answer
    if field is not None:
        assert field in answer["error_data"], answer


@asynccontextmanager
async def serving_isp_sim(client: AppClient, slug: str) -> AsyncIterator[isp_sim.IspSimulator]:
    """The group's LIVE ISP system: isp-sim over our ISP protocol, for LIVE tokens."""
    server, simulator = await isp_sim.start("127.0.0.1", 0, api_key=SIM_KEY, slow_delay_s=1.0)
    port = server.sockets[0].getsockname()[1]
    provider = IspHttpProvider(
        group=slug,
        base_url=f"http://127.0.0.1:{port}",
        api_key=SIM_KEY,
        connect_timeout_s=1.0,
        timeout_s=2.0,
        max_connections=4,
        settle_window_s=120.0,
    )
    client.gateway.live[slug] = provider
    try:
        yield simulator
    finally:
        del client.gateway.live[slug]
        await provider.aclose()
        await isp_sim.stop(server, simulator)
