"""isp-sim's own HTTP handling, over a raw socket and on the simulator directly; what the
adapter makes of its answers is in tests/isps/test_adapter.py, its faults in
test_isp_sim_faults.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import date

import httpx
import pytest

from bhuktani.clock import DAY_MS, day_start_ms
from bhuktani.isps.base import Paid, Refused
from bhuktani.sandbox import isp_sim
from tests.sandbox.conftest import API_KEY, AUTH, PAYMENTS_PATH, Sim, order, order_json
from tests.support import free_port, wait_healthy

pytestmark = pytest.mark.asyncio


async def exchange(sim: Sim, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=5)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_sim_answers_healthz_without_a_key(sim: Sim) -> None:
    answer = await exchange(sim, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b'{"status":"ok"}')


async def test_sim_refuses_a_wrong_key(sim: Sim) -> None:
    request = b"GET /_sim/applied HTTP/1.0\r\nAuthorization: Bearer nope\r\n\r\n"
    answer = await exchange(sim, request)
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert answer.endswith(b'{"error":"unauthorized"}')


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/2.0\r\n\r\n", b"505"),
        (b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"400"),
        (b"POST /healthz HTTP/1.1\r\nContent-Length: 70000\r\n\r\n", b"413"),
        (b"POST /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"501"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", b"431"),
        (b"GET /healthz HTTP/1.1\r\n" + b"X-A: 1\r\n" * 100 + b"\r\n", b"431"),
    ],
)
async def test_sim_answers_malformed_http_and_closes(
    sim: Sim, request_bytes: bytes, status: bytes
) -> None:
    answer = await exchange(sim, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"Connection: close\r\n" in answer


async def test_sim_refuses_a_malformed_payment_body(sim: Sim) -> None:
    body = b'{"payment_id": "41"}'
    request = (
        b"POST /hashcnet-v2/vns/payments HTTP/1.1\r\nAuthorization: Bearer "
        + API_KEY.encode()
        + b"\r\nConnection: close\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    answer = await exchange(sim, request)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"payment_id must be a non-negative integer" in answer


async def test_simulator_drops_a_lost_payment_without_applying_it() -> None:
    simulator = isp_sim.IspSimulator()
    request = isp_sim.Request(
        method="POST",
        target="/arrownet/arrownet/payments",
        headers={},
        body=(
            b'{"payment_id": 1, "username": "lost-user", "package_code": 1,'
            b' "package_title": "50Mbps", "duration_code": "1", "days": 30,'
            b' "amount_paisa": 169500}'
        ),
        keep_alive=True,
    )
    assert isinstance(simulator.handle(request), isp_sim.Drop)
    assert simulator.applied().body == {"payments": []}


async def test_serve_runs_until_cancelled() -> None:
    ready = asyncio.Event()
    serving = asyncio.create_task(
        isp_sim.serve("127.0.0.1", 0, api_key=None, slow_delay_s=0.0, ready=ready)
    )
    await asyncio.wait_for(ready.wait(), timeout=5)
    assert not serving.done()
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving


async def test_sim_answers_503_past_the_payments_it_may_keep_set_on_its_command_line() -> None:
    """A load test sets the bound above what it will pay; past it, new payments are
    answered 503 and nothing is applied, while the ones kept are still answered."""
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "bhuktani", "isp-sim", "--port", str(port)),
            *("--api-key", API_KEY, "--max-payments", "2"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_healthy, base_url, process)
        async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=5) as client:
            answers = [await client.post(PAYMENTS_PATH, json=order_json(i)) for i in (1, 2, 3, 1)]
            applied = (await client.get("/_sim/applied")).json()["payments"]
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 10)

    assert [a.status_code for a in answers] == [200, 200, 503, 200]
    assert answers[2].json() == {"error": "too_many_payments"}
    assert answers[3].json() == answers[0].json()
    assert sorted(p["payment_id"] for p in applied) == [1, 2]


# The daily settlement report.

DAY = date(2026, 12, 6)
DAY_START_MS = day_start_ms(DAY)
REPORT_PATH = "/hashcnet-v2/vns/settlements/2026-12-06"


async def test_the_daily_report_lists_the_payments_applied_that_day(sim: Sim) -> None:
    """Over a real socket, after payments through the LIVE adapter: those applied on the
    day (Nepal time), with their amounts and receipts; neither a refused payment nor one
    applied on the next day's first millisecond."""
    provider = sim.adapter()
    sim.simulator.clock = lambda: DAY_START_MS + 9 * 3600 * 1000
    first = await provider.pay(order(41))
    sim.simulator.clock = lambda: DAY_START_MS + DAY_MS - 1
    last = await provider.pay(order(42))
    refused = await provider.pay(order(43, username="refuse-user"))
    sim.simulator.clock = lambda: DAY_START_MS + DAY_MS
    await provider.pay(order(44))
    assert isinstance(first, Paid) and isinstance(last, Paid) and isinstance(refused, Refused)
    assert await sim.get_json(REPORT_PATH) == {
        "date": "2026-12-06",
        "isp": "vns",
        "payments": [
            {
                "payment_id": 41,
                "amount_paisa": 99_900,
                "receipt": first.receipt,
                "applied_at": "2026-12-06T09:00:00.000+05:45",
            },
            {
                "payment_id": 42,
                "amount_paisa": 99_900,
                "receipt": last.receipt,
                "applied_at": "2026-12-06T23:59:59.999+05:45",
            },
        ],
        "count": 2,
        "total_paisa": 199_800,
    }
    following = await sim.get_json("/hashcnet-v2/vns/settlements/2026-12-07")
    assert [p["payment_id"] for p in following["payments"]] == [44]


async def test_the_daily_report_is_per_isp_and_empty_for_a_quiet_day(sim: Sim) -> None:
    sim.simulator.clock = lambda: DAY_START_MS
    assert isinstance(await sim.adapter().pay(order(41)), Paid)
    quiet = await sim.get_json("/hashcnet-v2/hons/settlements/2026-12-06")
    assert quiet == {
        "date": "2026-12-06",
        "isp": "hons",
        "payments": [],
        "count": 0,
        "total_paisa": 0,
    }
    assert (await sim.get_json("/hashcnet-v2/vns/settlements/2026-12-05"))["count"] == 0


@pytest.mark.parametrize("day", ["2026-02-30", "20261206", "2026-12-6", "06-12-2026", "today"])
async def test_the_daily_report_of_a_malformed_date_is_400(sim: Sim, day: str) -> None:
    response = await sim.client().get(f"/hashcnet-v2/vns/settlements/{day}")
    assert response.status_code == 400
    assert response.json() == {
        "error": "bad_request",
        "detail": "the date must be a day, YYYY-MM-DD",
    }


@pytest.mark.parametrize(
    "path", ["/hashcnet-v2/nowhere/settlements/2026-12-06", "/arrownet/vns/settlements/2026-12-06"]
)
async def test_the_daily_report_of_an_unknown_isp_is_404(sim: Sim, path: str) -> None:
    response = await sim.client().get(path)
    assert response.status_code == 404
    assert response.json() == {"error": "unknown_route"}


async def test_the_daily_report_wants_the_key(sim: Sim) -> None:
    response = await sim.client(headers={"Authorization": "Bearer nope"}).get(REPORT_PATH)
    assert response.status_code == 401
    assert (await sim.client(headers={}).get(REPORT_PATH)).status_code == 401
