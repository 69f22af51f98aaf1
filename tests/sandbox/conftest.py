"""A real isp-sim on a free local port, and the ways the tests talk to it: the LIVE adapter,
plain httpx, and the admin routes that show the ISP's own truth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest_asyncio

from bhuktani.isps.adapter import IspHttpProvider
from bhuktani.isps.base import Order
from bhuktani.sandbox import isp_sim
from bhuktani.services import hashcnet_v2

API_KEY = "isp-key-s3cr3t-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}

ORDER = Order(
    payment_id=41,
    merchant_id=7,
    isp="vns",
    username="jeetenaug4",
    package_code=9,
    package_title="FTTH-50Mbps",
    duration_code="1",
    days=30,
    amount_paisa=99_900,
)
PAYMENTS_PATH = "/hashcnet-v2/vns/payments"


def order(payment_id: int, username: str = "jeetenaug4") -> Order:
    return replace(ORDER, payment_id=payment_id, username=username)


def order_json(payment_id: int) -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "username": ORDER.username,
        "package_code": ORDER.package_code,
        "package_title": ORDER.package_title,
        "duration_code": ORDER.duration_code,
        "days": ORDER.days,
        "amount_paisa": ORDER.amount_paisa,
    }


@dataclass
class Sim:
    base_url: str
    port: int
    simulator: isp_sim.IspSimulator
    providers: list[IspHttpProvider] = field(default_factory=list)
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def adapter(self, *, timeout_s: float = 2.0) -> IspHttpProvider:
        provider = IspHttpProvider(
            group=hashcnet_v2.SLUG,
            base_url=self.base_url,
            api_key=API_KEY,
            connect_timeout_s=1.0,
            timeout_s=timeout_s,
            max_connections=4,
            settle_window_s=120.0,
        )
        self.providers.append(provider)
        return provider

    def client(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        """Plain httpx, to see the wire itself; with the key unless told otherwise."""
        client = httpx.AsyncClient(
            base_url=self.base_url, headers=AUTH if headers is None else headers, timeout=5.0
        )
        self.clients.append(client)
        return client

    async def get_json(self, path: str) -> Any:
        response = await self.client().get(path)
        assert response.status_code == 200, response.text
        return response.json()

    async def put_faults(self, settings: Any) -> httpx.Response:
        return await self.client().put("/_sim/faults", json=settings)

    async def applied(self) -> list[dict[str, Any]]:
        payments: list[dict[str, Any]] = (await self.get_json("/_sim/applied"))["payments"]
        return payments

    async def applied_ids(self) -> set[int]:
        return {p["payment_id"] for p in await self.applied()}


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Sim]:
    server, simulator = await isp_sim.start("127.0.0.1", 0, api_key=API_KEY, slow_delay_s=1.0)
    port = server.sockets[0].getsockname()[1]
    running = Sim(f"http://127.0.0.1:{port}", port, simulator)
    try:
        yield running
    finally:
        for provider in running.providers:
            await provider.aclose()
        for client in running.clients:
            await client.aclose()
        await isp_sim.stop(server, simulator)
