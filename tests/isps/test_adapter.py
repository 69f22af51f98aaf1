"""The LIVE adapter: each mapping rule against a one-handler HTTP server, each network
fault against a socket that misbehaves on purpose, then end to end against a real isp-sim
on a free local port, its network faults included."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any, TypeVar

import httpx
import orjson
import pytest
import pytest_asyncio
import structlog
import structlog.testing
from aiohttp import web
from prometheus_client import REGISTRY

from bhuktani.clock import DAY_MS, day_start_ms
from bhuktani.isps import adapter as isp_http
from bhuktani.isps import codec
from bhuktani.isps.adapter import MAX_ANSWER_BYTES, IspHttpProvider
from bhuktani.isps.base import (
    Applied,
    Lookup,
    NotFound,
    Order,
    Paid,
    PayResult,
    ProviderUnavailable,
    Refused,
    ReportUnreadable,
    SettlementReport,
    StatusResult,
    Subscriber,
    Unknown,
)
from bhuktani.sandbox import isp_sim
from bhuktani.services import arrownet, hashcnet_v2

pytestmark = pytest.mark.asyncio

T = TypeVar("T")
API_KEY = "isp-key-s3cr3t-0123456789"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

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
ARROWNET_ORDER = replace(
    ORDER,
    isp="arrownet",
    username="Pradhanang",
    package_code=1,
    package_title="50Mbps",
    duration_code="3",
    days=90,
    amount_paisa=508_500,
)
VNS_LOOKUP = Lookup(isp="vns", username="jeetenaug4", merchant_id=7)


def adapter(
    *,
    base_url: str = "http://127.0.0.1:9",
    group: str = hashcnet_v2.SLUG,
    api_key: str = API_KEY,
    connect_timeout_s: float = 1.0,
    timeout_s: float = 2.0,
) -> IspHttpProvider:
    return IspHttpProvider(
        group=group,
        base_url=base_url,
        api_key=api_key,
        connect_timeout_s=connect_timeout_s,
        timeout_s=timeout_s,
        max_connections=4,
        settle_window_s=120.0,
    )


@asynccontextmanager
async def isp(handler: Handler) -> AsyncIterator[str]:
    """An HTTP server on a free local port answering every request with handler."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def raw_isp(reply: bytes) -> AsyncIterator[str]:
    """A socket that reads the request's head, writes reply (any bytes) and hangs up."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def closed_port() -> str:
    """The address of a local port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def answering(status_code: int, body: Any) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        return web.Response(status=status_code, body=content)

    return handler


def stalling(seconds: float) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.Response(body=orjson.dumps({"status": "paid", "receipt": "1"}))

    return handler


async def closing(provider: IspHttpProvider, action: Callable[[], Awaitable[T]]) -> T:
    try:
        return await action()
    finally:
        await provider.aclose()


async def call_with(handler: Handler, call: str, **kw: Any) -> Any:
    async with isp(handler) as base_url:
        provider = adapter(base_url=base_url, **kw)
        if call == "pay":
            return await closing(provider, lambda: provider.pay(ORDER))
        if call == "status":
            return await closing(provider, lambda: provider.status(ORDER))
        return await closing(provider, lambda: provider.lookup(VNS_LOOKUP))


async def pay_with(handler: Handler, **kw: Any) -> PayResult:
    result: PayResult = await call_with(handler, "pay", **kw)
    return result


async def status_with(handler: Handler, **kw: Any) -> StatusResult:
    result: StatusResult = await call_with(handler, "status", **kw)
    return result


async def lookup_with(handler: Handler, **kw: Any) -> Subscriber | None:
    result: Subscriber | None = await call_with(handler, "lookup", **kw)
    return result


async def pay_at(base_url: str) -> PayResult:
    provider = adapter(base_url=base_url, connect_timeout_s=0.5, timeout_s=0.5)
    return await closing(provider, lambda: provider.pay(ORDER))


def timed(call: str, outcome: str, isp: str = "vns") -> tuple[float, float]:
    """The ISP-latency histogram's (count, sum) for these labels, 0 if never observed."""
    labels = {"group": hashcnet_v2.SLUG, "isp": isp, "call": call, "outcome": outcome}
    count = REGISTRY.get_sample_value("bhuktani_isp_http_seconds_count", labels) or 0.0
    total = REGISTRY.get_sample_value("bhuktani_isp_http_seconds_sum", labels) or 0.0
    return count, total


# pay, against a one-handler server


async def test_pay_sends_the_order_as_json_with_the_bearer_key() -> None:
    seen: list[tuple[str, str, str, str, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(
            (
                request.method,
                request.path,
                request.headers["Authorization"],
                request.headers["Content-Type"],
                await request.read(),
            )
        )
        return web.json_response({"status": "paid", "receipt": "1", "payment_id": 41})

    assert await pay_with(handler) == Paid("1")
    ((method, path, authorization, content_type, body),) = seen
    assert method == "POST"
    assert path == "/hashcnet-v2/vns/payments"
    assert authorization == f"Bearer {API_KEY}"
    assert content_type == "application/json"
    assert body == (
        b'{"payment_id":41,"username":"jeetenaug4","package_code":9,'
        b'"package_title":"FTTH-50Mbps","duration_code":"1","days":30,"amount_paisa":99900}'
    )


async def test_pay_200_paid_with_receipt_is_paid() -> None:
    result = await pay_with(answering(200, {"status": "paid", "receipt": "778899"}))
    assert result == Paid("778899")


async def test_pay_422_refused_with_field_is_refused() -> None:
    body = {"status": "refused", "reason": "The amount does not match", "field": "amount"}
    assert await pay_with(answering(422, body)) == Refused("The amount does not match", "amount")


async def test_pay_422_refused_without_field_is_refused() -> None:
    body = {"status": "refused", "reason": "Account closed", "field": None}
    assert await pay_with(answering(422, body)) == Refused("Account closed", None)


async def test_pay_refusal_reason_is_cut_short() -> None:
    body = {"status": "refused", "reason": "x" * 10_000}
    result = await pay_with(answering(422, body))
    assert isinstance(result, Refused)
    assert len(result.reason) == 200


@pytest.mark.parametrize("status_code", [500, 502, 503, 504])
async def test_pay_5xx_is_unknown(status_code: int) -> None:
    # Even a 5xx whose body says paid is no explicit answer.
    body = {"status": "paid", "receipt": "1"}
    assert isinstance(await pay_with(answering(status_code, body)), Unknown)


@pytest.mark.parametrize(
    "body", [b"<html>gateway error</html>", b"", b'"paid"', b"[1, 2]", b'{"status": "pa']
)
async def test_pay_unreadable_body_is_unknown(body: bytes) -> None:
    assert isinstance(await pay_with(answering(200, body)), Unknown)


@pytest.mark.parametrize(
    "status_code, body",
    [
        (200, {"status": "paid"}),  # no receipt
        (200, {"status": "paid", "receipt": 1234}),  # not a string
        (200, {"status": "paid", "receipt": ""}),
        (200, {"status": "paid", "receipt": "1", "payment_id": 42}),  # another payment
        (200, {"status": "pending"}),
        (200, {"status": "refused", "reason": "no"}),  # a refusal must be a 422
        (201, {"status": "paid", "receipt": "1"}),
        (422, {"error": "unprocessable"}),
        (400, {"status": "refused", "reason": "bad request"}),
        (401, {"error": "unauthorized"}),
        (404, {"status": "not_found"}),
    ],
)
async def test_pay_unexpected_answer_is_unknown(status_code: int, body: dict[str, Any]) -> None:
    assert isinstance(await pay_with(answering(status_code, body)), Unknown)


@pytest.mark.parametrize(
    "reply, fault",
    [
        (b"", "closed without an answer"),  # hung up without a word
        (b"garbage\r\n\r\n", "not HTTP"),  # not HTTP
        # The head promises a body the ISP never finishes.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", "closed in the middle of the answer"),
    ],
)
async def test_pay_network_fault_is_unknown(reply: bytes, fault: str) -> None:
    async with raw_isp(reply) as base_url:
        result = await pay_at(base_url)
    assert result == Unknown(f"no answer from the ISP ({fault})")


async def test_pay_refused_connection_is_unknown() -> None:
    result = await pay_at(closed_port())
    assert result == Unknown("no answer from the ISP (could not connect: ConnectionRefusedError)")


async def test_pay_timeout_says_so() -> None:
    result = await pay_with(stalling(5), timeout_s=0.1)
    assert isinstance(result, Unknown)
    assert result.reason.startswith("the ISP did not answer in time (")


async def test_pay_overall_deadline_bounds_a_stalled_isp() -> None:
    started = time.monotonic()
    result = await pay_with(stalling(5), connect_timeout_s=0.05, timeout_s=0.05)
    assert isinstance(result, Unknown)
    assert time.monotonic() - started < 1.0


async def test_pay_overall_deadline_bounds_a_trickling_isp() -> None:
    # Each byte comes inside the read timeout; the whole answer never does.
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 1000
        await response.prepare(request)
        for _ in range(1000):
            await response.write(b" ")
            await asyncio.sleep(0.05)
        return response

    started = time.monotonic()
    result = await pay_with(handler, connect_timeout_s=0.2, timeout_s=0.2)
    assert isinstance(result, Unknown)
    assert "in time" in result.reason
    assert time.monotonic() - started < 1.5


async def test_pay_redirect_is_not_followed() -> None:
    # A redirect is no answer: following it would send the key and the order elsewhere.
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path == "/elsewhere":
            return web.json_response({"status": "paid", "receipt": "1"})
        raise web.HTTPTemporaryRedirect("/elsewhere")

    assert isinstance(await pay_with(handler), Unknown)
    assert hits == ["/hashcnet-v2/vns/payments"]


async def test_pay_oversized_answer_is_unknown() -> None:
    body = {"status": "paid", "receipt": "1", "padding": "x" * MAX_ANSWER_BYTES}
    assert isinstance(await pay_with(answering(200, body)), Unknown)


async def test_metrics_tell_how_many_calls_wait_for_a_connection(tmp_path: Any) -> None:
    """Past BHUKTANI_ISP_MAX_CONNECTIONS calls queue: what an operator reads when LIVE
    payments slow down and the ISP's own latency does not explain it."""
    from bhuktani.api.app import create_app
    from tests.support import METRICS_AUTH, fast_settings

    async with isp(stalling(0.3)) as base_url:
        settings = fast_settings(
            f"sqlite:///{tmp_path}/metrics.db",
            isps={"arrownet": {"base_url": base_url, "api_key": API_KEY}},
            isp_max_connections=1,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            provider = app.state.gateway.live["arrownet"]
            paying = [asyncio.create_task(provider.pay(ARROWNET_ORDER)) for _ in range(3)]
            await asyncio.sleep(0.1)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
                scraped = (await http.get("/metrics", headers=METRICS_AUTH)).text
            assert [type(result) for result in await asyncio.gather(*paying)] == [Paid] * 3
            assert provider.waiting == 0
    assert 'bhuktani_isp_calls_waiting{group="arrownet"} 2.0' in scraped


async def test_api_key_is_never_in_a_reason() -> None:
    async def echo(request: web.Request) -> web.Response:
        # An ISP that echoes what it was sent, key included, in an unreadable answer.
        return web.Response(status=502, text=request.headers["Authorization"])

    for result in (await pay_with(echo), await pay_at(closed_port())):
        assert isinstance(result, Unknown)
        assert API_KEY not in result.reason
    with pytest.raises(ProviderUnavailable) as caught:
        await lookup_with(echo)
    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)


# Hostile answers: made safe at the edge, an explicit outcome kept explicit


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("R\x00X", "R\\x00X"),
        ("R\tX\r\n", "R\\tX\\r\\n"),
        ("\u202eR", "\\u202eR"),
        ("R" * 5000, "R" * 99 + "…"),
        ("रसिद-१", "रसिद-१"),  # printable in any script: kept as it is
    ],
)
async def test_pay_paid_with_an_unsafe_receipt_is_paid_with_it_made_safe(
    raw: str, safe: str
) -> None:
    for call in (pay_with, status_with):
        body = {"status": "paid", "receipt": raw}
        assert await call(answering(200, body)) == Paid(safe)


async def test_a_receipt_made_safe_is_logged_raw_and_repr_d(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with structlog.testing.capture_logs() as logged:
        # The module's logger may have been bound, and cached, by an earlier test's
        # configure_logging: one made now logs to the capture.
        monkeypatch.setattr(isp_http, "log", structlog.get_logger())
        await pay_with(answering(200, {"status": "paid", "receipt": "R\x00X"}))
    [event] = [e for e in logged if e["event"] == "isp_receipt_made_safe"]
    assert event["raw"] == "'R\\x00X'"
    assert event["receipt"] == "R\\x00X"


async def test_a_refusal_with_unsafe_text_is_refused_with_safe_text() -> None:
    body = {"status": "refused", "reason": "No\x00plan\n", "field": "amount\x00"}
    assert await pay_with(answering(422, body)) == Refused("No\ufffdplan\ufffd", None)
    body = {"status": "refused", "reason": "\x00", "field": "duration"}
    assert await pay_with(answering(422, body)) == Refused("\ufffd", "duration")


@pytest.mark.parametrize(
    ("status_code", "body", "unreadable"),
    [
        (200, b"garbage", True),
        (200, {"status": "pa\x00id", "receipt": "1"}, True),
        (200, {"status": "paid"}, True),
        (200, {"status": "paid", "receipt": 7}, True),
        (200, {"status": "paid", "receipt": "1", "payment_id": 42}, True),
        (401, {"error": "unauthorized"}, True),
        (503, {"error": "unavailable"}, False),
        (502, b"", False),
    ],
)
async def test_an_answer_that_cannot_be_read_is_unknown_and_says_so(
    status_code: int, body: Any, unreadable: bool
) -> None:
    for call in (pay_with, status_with):
        result = await call(answering(status_code, body))
        assert isinstance(result, Unknown)
        assert result.unreadable is unreadable, result


async def test_a_timeout_or_pending_is_unknown_but_not_unreadable() -> None:
    pending = await status_with(answering(200, {"status": "pending"}))
    timed_out = await pay_with(stalling(5), timeout_s=0.1)
    assert isinstance(pending, Unknown) and not pending.unreadable
    assert isinstance(timed_out, Unknown) and not timed_out.unreadable


# status, against a one-handler server


async def test_status_200_paid_is_paid() -> None:
    assert await status_with(answering(200, {"status": "paid", "receipt": "55"})) == Paid("55")


async def test_status_asks_for_the_payment_id() -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response({"status": "not_found"}, status=404)

    await status_with(handler)
    assert seen == ["GET /hashcnet-v2/vns/payments/41"]


async def test_status_200_refused_is_refused() -> None:
    body = {"status": "refused", "reason": "No plan", "field": "duration_code"}
    assert await status_with(answering(200, body)) == Refused("No plan", "duration_code")


async def test_status_404_not_found_is_not_found() -> None:
    assert await status_with(answering(404, {"status": "not_found"})) == NotFound()


@pytest.mark.parametrize("body", [{"error": "unknown_route"}, b"Not Found", b""])
async def test_status_404_with_another_body_is_unknown(body: Any) -> None:
    # A 404 from a proxy or a wrong URL is not the ISP saying it never saw the payment.
    assert isinstance(await status_with(answering(404, body)), Unknown)


async def test_status_200_pending_is_unknown() -> None:
    result = await status_with(answering(200, {"status": "pending"}))
    assert result == Unknown("the ISP is still processing the payment")


@pytest.mark.parametrize(
    "status_code, body",
    [(500, {"status": "paid", "receipt": "1"}), (200, b"garbage"), (200, {"status": "odd"})],
)
async def test_status_other_answers_are_unknown(status_code: int, body: Any) -> None:
    assert isinstance(await status_with(answering(status_code, body)), Unknown)


async def test_status_timeout_is_unknown() -> None:
    assert isinstance(await status_with(stalling(5), timeout_s=0.1), Unknown)


# lookup, against a one-handler server


async def test_lookup_200_is_the_subscriber() -> None:
    body = codec.subscriber_to_json(hashcnet_v2.SANDBOX_USER)
    assert await lookup_with(answering(200, body)) == hashcnet_v2.SANDBOX_USER


async def test_lookup_404_not_found_is_none() -> None:
    assert await lookup_with(answering(404, {"status": "not_found"})) is None


async def test_lookup_quotes_the_username() -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({"status": "not_found"}, status=404)

    async with isp(handler) as base_url:
        provider = adapter(base_url=base_url)
        await closing(provider, lambda: provider.lookup(Lookup("vns", "a b/../c?d", 7)))
    assert seen == ["/hashcnet-v2/vns/subscribers/a%20b%2F..%2Fc%3Fd"]


@pytest.mark.parametrize(
    "status_code, body",
    [
        (500, {"error": "internal"}),
        (503, b""),
        (404, {"error": "unknown_route"}),
        (401, {"error": "unauthorized"}),
        (200, b"<html></html>"),
        (200, {"username": "jeetenaug4"}),  # not a whole subscriber
    ],
)
async def test_lookup_other_answers_raise_provider_unavailable(status_code: int, body: Any) -> None:
    with pytest.raises(ProviderUnavailable):
        await lookup_with(answering(status_code, body))


async def test_lookup_network_fault_raises_provider_unavailable() -> None:
    with pytest.raises(ProviderUnavailable):
        await lookup_with(stalling(5), timeout_s=0.1)


async def test_each_exchange_is_timed_by_isp_call_and_outcome() -> None:
    """What an operator graphs when an ISP slows down: every exchange, whatever became of
    it, under its ISP, its call and what came back."""
    before = {
        key: timed(*key)
        for key in [
            ("pay", "2xx"),
            ("pay", "timeout"),
            ("pay", "no_answer"),
            ("status", "4xx"),
            ("lookup", "5xx"),
            ("pay", "cancelled"),
        ]
    }
    assert await pay_with(stalling(0.2)) == Paid("1")
    assert isinstance(await pay_with(stalling(5), timeout_s=0.1), Unknown)
    assert isinstance(await pay_at(closed_port()), Unknown)
    assert await status_with(answering(404, {"status": "not_found"})) == NotFound()
    with pytest.raises(ProviderUnavailable):
        await lookup_with(answering(503, {}))
    abandoned = asyncio.create_task(pay_with(stalling(5)))
    await asyncio.sleep(0.2)
    abandoned.cancel()
    with pytest.raises(asyncio.CancelledError):
        await abandoned

    after = {key: timed(*key) for key in before}
    grew = {
        key: (after[key][0] - count, after[key][1] - total)
        for key, (count, total) in before.items()
    }
    assert {key: count for key, (count, _) in grew.items()} == dict.fromkeys(before, 1.0)
    assert grew[("pay", "2xx")][1] >= 0.2, "the ISP's 0.2 s is in the time"
    assert 0.1 <= grew[("pay", "timeout")][1] < 2.0, "a timeout is timed to its deadline"


async def test_constructor_refuses_unbounded_settings() -> None:
    with pytest.raises(ValueError, match="max_connections must be at least 1"):
        IspHttpProvider("hashcnet-v2", "http://isp.test", API_KEY, 1.0, 1.0, 0, 120.0)
    with pytest.raises(ValueError, match="timeouts must be positive"):
        IspHttpProvider("hashcnet-v2", "http://isp.test", API_KEY, 0.0, 1.0, 4, 120.0)


# End to end, against a real isp-sim


@dataclass
class Sim:
    base_url: str
    port: int
    simulator: isp_sim.IspSimulator
    providers: list[IspHttpProvider] = field(default_factory=list)

    def adapter(self, group: str = hashcnet_v2.SLUG, **kw: Any) -> IspHttpProvider:
        provider = adapter(base_url=self.base_url, group=group, **kw)
        self.providers.append(provider)
        return provider

    async def applied(self) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers) as client:
            response = await client.get("/_sim/applied")
        assert response.status_code == 200
        payments: list[dict[str, Any]] = response.json()["payments"]
        return payments


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
        await isp_sim.stop(server, simulator)


def scenario(username: str, payment_id: int) -> Order:
    return replace(ORDER, username=username, payment_id=payment_id)


async def test_sim_lookup_of_the_documented_user(sim: Sim) -> None:
    assert await sim.adapter().lookup(VNS_LOOKUP) == hashcnet_v2.SANDBOX_USER


async def test_sim_lookup_matches_usernames_loosely(sim: Sim) -> None:
    found = await sim.adapter().lookup(Lookup("techminds", "  JeetenAug4 ", 7))
    assert found == hashcnet_v2.SANDBOX_USER


async def test_sim_lookup_of_an_unknown_user_is_none(sim: Sim) -> None:
    assert await sim.adapter().lookup(Lookup("vns", "nobody-here", 7)) is None


async def test_sim_lookup_of_an_isp_outside_the_group_is_unavailable(sim: Sim) -> None:
    # A misrouted request must not read as "no such subscriber".
    with pytest.raises(ProviderUnavailable):
        await sim.adapter().lookup(Lookup("arrownet", "Pradhanang", 7))


async def test_sim_pay_normal_changes_plan_and_adds_days(sim: Sim) -> None:
    provider = sim.adapter()
    paid = await provider.pay(ORDER)
    assert isinstance(paid, Paid)
    assert paid.receipt.isdigit()
    after = await provider.lookup(VNS_LOOKUP)
    assert after is not None
    assert after.current_plan == "FTTH-50Mbps"
    assert after.days_remaining == hashcnet_v2.SANDBOX_USER.days_remaining + 30
    assert await provider.status(ORDER) == paid


async def test_sim_state_is_per_isp(sim: Sim) -> None:
    provider = sim.adapter()
    assert isinstance(await provider.pay(ORDER), Paid)
    other = await provider.lookup(Lookup("hons", "jeetenaug4", 7))
    assert other == hashcnet_v2.SANDBOX_USER


async def test_sim_repeat_payment_returns_the_first_receipt_and_applies_once(sim: Sim) -> None:
    provider = sim.adapter()
    first = await provider.pay(ORDER)
    repeats = await asyncio.gather(*(provider.pay(ORDER) for _ in range(5)))
    assert isinstance(first, Paid)
    assert all(result == first for result in repeats)
    applied = [p for p in await sim.applied() if p["payment_id"] == ORDER.payment_id]
    assert applied == [
        {
            "payment_id": 41,
            "group": "hashcnet-v2",
            "isp": "vns",
            "username": "jeetenaug4",
            "amount_paisa": 99_900,
            "receipt": first.receipt,
        }
    ]
    after = await provider.lookup(VNS_LOOKUP)
    assert after is not None
    assert after.days_remaining == hashcnet_v2.SANDBOX_USER.days_remaining + 30


async def test_sim_refuse_user_is_refused_and_remembered(sim: Sim) -> None:
    provider = sim.adapter()
    order = scenario("refuse-user", 50)
    refused = await provider.pay(order)
    assert isinstance(refused, Refused)
    assert refused.field is None
    assert await provider.status(order) == refused
    assert await sim.applied() == []


async def test_sim_wrong_amount_is_refused_on_the_field(sim: Sim) -> None:
    result = await sim.adapter().pay(replace(ORDER, amount_paisa=100))
    assert result == Refused("The amount does not match the plan price", "amount")


async def test_sim_unknown_user_payment_is_refused(sim: Sim) -> None:
    result = await sim.adapter().pay(scenario("nobody-here", 51))
    assert result == Refused("Username not found", "username")


async def test_sim_flaky_user_is_unknown_then_paid(sim: Sim) -> None:
    provider = sim.adapter()
    order = scenario("flaky-user", 60)
    assert isinstance(await provider.pay(order), Unknown)
    status = await provider.status(order)
    assert isinstance(status, Paid)
    assert [p["receipt"] for p in await sim.applied()] == [status.receipt]


async def test_sim_lost_user_is_unknown_then_not_found(sim: Sim) -> None:
    provider = sim.adapter()
    order = scenario("lost-user", 70)
    assert isinstance(await provider.pay(order), Unknown)
    assert await provider.status(order) == NotFound()
    assert await sim.applied() == []
    after = await provider.lookup(Lookup("vns", "lost-user", 7))
    assert after is not None
    assert after.days_remaining == hashcnet_v2.SANDBOX_USER.days_remaining


async def test_sim_slow_user_times_out_then_is_paid(sim: Sim) -> None:
    provider = sim.adapter(timeout_s=0.3)
    order = scenario("slow-user", 80)
    started = time.monotonic()
    result = await provider.pay(order)
    assert isinstance(result, Unknown)
    assert "in time" in result.reason
    assert time.monotonic() - started < 1.0  # the adapter gave up before the ISP answered
    assert isinstance(await provider.status(order), Paid)


async def test_sim_slow_user_is_paid_when_the_adapter_waits(sim: Sim) -> None:
    result = await sim.adapter(timeout_s=3.0).pay(scenario("slow-user", 81))
    assert isinstance(result, Paid)


async def test_sim_wrong_api_key_is_unavailable_and_never_paid(sim: Sim) -> None:
    provider = sim.adapter(api_key="not-the-key")
    with pytest.raises(ProviderUnavailable):
        await provider.lookup(VNS_LOOKUP)
    assert isinstance(await provider.pay(ORDER), Unknown)
    assert await sim.applied() == []


async def test_sim_arrownet_documented_user(sim: Sim) -> None:
    provider = sim.adapter(group=arrownet.SLUG)
    lookup = Lookup("arrownet", "pradhanang", 7)
    assert await provider.lookup(lookup) == arrownet.SANDBOX_USER
    paid = await provider.pay(ARROWNET_ORDER)
    assert isinstance(paid, Paid)
    after = await provider.lookup(lookup)
    assert after is not None
    assert after.current_plan == "50Mbps"
    assert after.days_remaining == arrownet.SANDBOX_USER.days_remaining + 90
    assert await provider.status(ARROWNET_ORDER) == paid


async def test_sim_connections_are_kept_alive(sim: Sim) -> None:
    provider = sim.adapter()
    for _ in range(3):
        await provider.lookup(VNS_LOOKUP)
    assert len(sim.simulator.connections) == 1


async def test_sim_full_payment_logs_no_api_key(sim: Sim, caplog: pytest.LogCaptureFixture) -> None:
    provider = sim.adapter()
    with caplog.at_level(logging.DEBUG):
        await provider.lookup(VNS_LOOKUP)
        await provider.pay(ORDER)
        await provider.pay(scenario("flaky-user", 90))
        await provider.status(ORDER)
    assert API_KEY not in caplog.text


# The daily settlement report: read strictly, refused whole when it is not one.

REPORT_DAY = date(2026, 12, 6)
# 10:15:30.123 on REPORT_DAY in Nepal time.
APPLIED_MS = day_start_ms(REPORT_DAY) + (10 * 3600 + 15 * 60 + 30) * 1000 + 123


def report_json(**changes: Any) -> dict[str, Any]:
    payments = [
        {
            "payment_id": 41,
            "amount_paisa": 99_900,
            "receipt": "R-1",
            "applied_at": "2026-12-06T10:15:30.123+05:45",
        },
        {
            "payment_id": 42,
            "amount_paisa": 169_500,
            "receipt": "R-2",
            "applied_at": "2026-12-06T23:59:59.999+05:45",
        },
    ]
    return {
        "date": "2026-12-06",
        "isp": "vns",
        "payments": payments,
        "count": 2,
        "total_paisa": 269_400,
        **changes,
    }


def with_payment(**changes: Any) -> dict[str, Any]:
    """The report with its first payment changed."""
    report = report_json()
    report["payments"][0] = {**report["payments"][0], **changes}
    return report


async def report_with(handler: Handler, **kw: Any) -> SettlementReport:
    async with isp(handler) as base_url:
        provider = IspHttpProvider(
            group=hashcnet_v2.SLUG,
            base_url=base_url,
            api_key=API_KEY,
            connect_timeout_s=1.0,
            timeout_s=2.0,
            max_connections=4,
            settle_window_s=120.0,
            **kw,
        )
        return await closing(provider, lambda: provider.settlement("vns", REPORT_DAY))


async def test_report_is_read_with_its_payments_and_times() -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path} {request.headers['Authorization']}")
        return web.Response(body=orjson.dumps(report_json()))

    report = await report_with(handler)
    assert seen == [f"GET /hashcnet-v2/vns/settlements/2026-12-06 Bearer {API_KEY}"]
    assert report == SettlementReport(
        "vns",
        REPORT_DAY,
        (
            Applied(41, 99_900, "R-1", APPLIED_MS),
            Applied(42, 169_500, "R-2", day_start_ms(REPORT_DAY) + DAY_MS - 1),
        ),
    )
    assert report.total_paisa == 269_400


async def test_an_empty_day_is_a_report_of_nothing() -> None:
    empty = report_json(payments=[], count=0, total_paisa=0)
    assert await report_with(answering(200, empty)) == SettlementReport("vns", REPORT_DAY, ())


async def test_a_report_receipt_with_unsafe_characters_is_kept_escaped() -> None:
    report = await report_with(answering(200, with_payment(receipt="R\x00\x1b[2J")))
    assert report.payments[0].receipt == "R\\x00\\x1b[2J"


@pytest.mark.parametrize(
    "body, why",
    [
        (b"not json", "an unreadable body"),
        (b'{"date": "2026-12-06", "isp": "vns", "payments": [', "an unreadable body"),
        (b"[]", "an unreadable body"),
        (report_json(date="2026-12-07"), "another day or ISP"),
        (report_json(isp="hons"), "another day or ISP"),
        (report_json(payments={"41": {}}), "no list of payments"),
        (report_json(count=3), "count is not the number"),
        (report_json(count="2"), "count is not the number"),
        (report_json(total_paisa=269_401), "total_paisa is not the sum"),
        (report_json(total_paisa=2694.0), "total_paisa is not the sum"),
        (report_json(payments=["41"], count=1), r"payments\[0\] is not an object"),
        (with_payment(payment_id="41"), "payment_id is not a payment id"),
        (with_payment(payment_id=True), "payment_id is not a payment id"),
        (with_payment(payment_id=0), "payment_id is not a payment id"),
        (with_payment(payment_id=2**63), "payment_id is not a payment id"),
        (with_payment(amount_paisa=999.0), "amount_paisa is not"),
        (with_payment(amount_paisa="99900"), "amount_paisa is not"),
        (with_payment(amount_paisa=-99_900), "amount_paisa is not"),
        (with_payment(amount_paisa=None), "amount_paisa is not"),
        (with_payment(receipt=41), "receipt is not a text"),
        (with_payment(receipt=""), "receipt is not a text"),
        (with_payment(applied_at="2026-12-06T10:15:30"), "applied_at is not a time of that day"),
        (with_payment(applied_at="2026-12-07T00:00:00+05:45"), "applied_at is not a time"),
        (with_payment(applied_at="2026-12-06T18:20:00+00:00"), "applied_at is not a time"),
        (with_payment(applied_at="yesterday"), "applied_at is not a time"),
        (with_payment(applied_at=1765000000000), "applied_at is not a time"),
        (with_payment(payment_id=42), "lists a payment twice"),
    ],
)
async def test_a_report_that_is_not_one_is_refused_whole(body: Any, why: str) -> None:
    with pytest.raises(ReportUnreadable, match=why):
        await report_with(answering(200, body))


async def test_a_report_past_its_size_bound_is_refused_unread() -> None:
    with pytest.raises(ReportUnreadable, match="past the size bound"):
        await report_with(answering(200, report_json()), max_report_bytes=200)
    # The same report within the bound is read.
    assert len((await report_with(answering(200, report_json()), max_report_bytes=400)).payments)


async def test_a_report_listing_too_many_payments_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(isp_http, "MAX_REPORT_PAYMENTS", 1)
    with pytest.raises(ReportUnreadable, match="more than 1 payments"):
        await report_with(answering(200, report_json()))


@pytest.mark.parametrize(
    "status_code, raised",
    [(503, ProviderUnavailable), (500, ProviderUnavailable), (404, ReportUnreadable)],
)
async def test_a_report_refused_by_the_isp_is_not_a_report(
    status_code: int, raised: type[Exception]
) -> None:
    with pytest.raises(raised, match=f"HTTP {status_code}"):
        await report_with(answering(status_code, {"error": "x"}))


async def test_a_report_not_given_in_time_is_unavailable() -> None:
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="did not answer in time"):
        await report_with(stalling(5), report_timeout_s=0.2)
    assert time.monotonic() - started < 2.0


async def test_a_report_of_an_isp_nobody_answers_for_is_unavailable() -> None:
    provider = adapter(base_url=closed_port())
    with pytest.raises(ProviderUnavailable, match="could not connect"):
        await closing(provider, lambda: provider.settlement("vns", REPORT_DAY))


async def test_sim_report_is_what_it_applied_that_day(sim: Sim) -> None:
    provider = sim.adapter()
    sim.simulator.clock = lambda: APPLIED_MS
    first = await provider.pay(ORDER)
    refused = await provider.pay(scenario("refuse-user", 43))
    sim.simulator.clock = lambda: day_start_ms(REPORT_DAY) + DAY_MS
    next_day = await provider.pay(replace(ORDER, payment_id=44))
    assert isinstance(first, Paid) and isinstance(next_day, Paid)
    assert isinstance(refused, Refused)
    report = await provider.settlement("vns", REPORT_DAY)
    assert report == SettlementReport(
        "vns", REPORT_DAY, (Applied(41, 99_900, first.receipt, APPLIED_MS),)
    )
    following = await provider.settlement("vns", REPORT_DAY + timedelta(days=1))
    assert [p.payment_id for p in following.payments] == [44]
    assert await provider.settlement("hons", REPORT_DAY) == SettlementReport("hons", REPORT_DAY, ())
