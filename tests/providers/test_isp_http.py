"""The LIVE adapter: each mapping rule against httpx's MockTransport, then end to end
against a real isp-sim on a free local port, its network faults included."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio

from bhuktani.providers import codec
from bhuktani.providers.base import (
    Lookup,
    NotFound,
    Order,
    Paid,
    PayResult,
    ProviderUnavailable,
    Refused,
    StatusResult,
    Subscriber,
    Unknown,
)
from bhuktani.providers.isp_http import MAX_ANSWER_BYTES, IspHttpProvider
from bhuktani.sandbox import catalog, isp_sim

pytestmark = pytest.mark.asyncio

T = TypeVar("T")
API_KEY = "isp-key-s3cr3t-0123456789"
Handler = (
    Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)

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
    handler: Handler | None = None,
    *,
    base_url: str = "http://isp.test",
    group: str = catalog.HASHCNET_V2,
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
        transport=httpx.MockTransport(handler) if handler is not None else None,
    )


def answering(status_code: int, body: Any) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(status_code, content=body)
        return httpx.Response(status_code, json=body)

    return handler


def raising(exc_type: type[httpx.TransportError], message: str = "boom") -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return handler


async def closing(provider: IspHttpProvider, action: Callable[[], Awaitable[T]]) -> T:
    try:
        return await action()
    finally:
        await provider.aclose()


async def pay_with(handler: Handler) -> PayResult:
    provider = adapter(handler)
    return await closing(provider, lambda: provider.pay(ORDER))


async def status_with(handler: Handler) -> StatusResult:
    provider = adapter(handler)
    return await closing(provider, lambda: provider.status(ORDER))


async def lookup_with(handler: Handler) -> Subscriber | None:
    provider = adapter(handler)
    return await closing(provider, lambda: provider.lookup(VNS_LOOKUP))


# pay, against a mock transport


async def test_pay_sends_the_order_as_json_with_the_bearer_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "paid", "receipt": "1", "payment_id": 41})

    assert await pay_with(handler) == Paid("1")
    (request,) = seen
    assert request.method == "POST"
    assert request.url.path == "/hashcnet-v2/vns/payments"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.read() == (
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
    "exc_type",
    [
        httpx.ReadTimeout,
        httpx.ConnectTimeout,
        httpx.PoolTimeout,
        httpx.ConnectError,
        httpx.ReadError,
        httpx.RemoteProtocolError,
    ],
)
async def test_pay_network_fault_is_unknown(exc_type: type[httpx.TransportError]) -> None:
    result = await pay_with(raising(exc_type))
    assert isinstance(result, Unknown)
    assert exc_type.__name__ in result.reason


async def test_pay_timeout_says_so() -> None:
    result = await pay_with(raising(httpx.ReadTimeout))
    assert result == Unknown("the ISP did not answer in time (ReadTimeout)")


async def test_pay_overall_deadline_bounds_a_stalled_isp() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={"status": "paid", "receipt": "1"})

    provider = adapter(handler, connect_timeout_s=0.05, timeout_s=0.05)
    started = time.monotonic()
    result = await closing(provider, lambda: provider.pay(ORDER))
    assert isinstance(result, Unknown)
    assert time.monotonic() - started < 1.0


async def test_pay_oversized_answer_is_unknown() -> None:
    body = {"status": "paid", "receipt": "1", "padding": "x" * MAX_ANSWER_BYTES}
    assert isinstance(await pay_with(answering(200, body)), Unknown)


async def test_api_key_is_never_in_a_reason() -> None:
    # httpx messages can hold the URL; a URL or a misbehaving layer can hold the key.
    result = await pay_with(raising(httpx.ConnectError, f"failed with Bearer {API_KEY}"))
    assert isinstance(result, Unknown)
    assert API_KEY not in result.reason
    with pytest.raises(ProviderUnavailable) as caught:
        await lookup_with(raising(httpx.ConnectError, f"failed with Bearer {API_KEY}"))
    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value)


# status, against a mock transport


async def test_status_200_paid_is_paid() -> None:
    assert await status_with(answering(200, {"status": "paid", "receipt": "55"})) == Paid("55")


async def test_status_asks_for_the_payment_id() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        return httpx.Response(404, json={"status": "not_found"})

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
    assert isinstance(await status_with(raising(httpx.ReadTimeout)), Unknown)


# lookup, against a mock transport


async def test_lookup_200_is_the_subscriber() -> None:
    body = codec.subscriber_to_json(catalog.HASHCNET_USER)
    assert await lookup_with(answering(200, body)) == catalog.HASHCNET_USER


async def test_lookup_404_not_found_is_none() -> None:
    assert await lookup_with(answering(404, {"status": "not_found"})) is None


async def test_lookup_quotes_the_username() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return httpx.Response(404, json={"status": "not_found"})

    provider = adapter(handler)
    await closing(provider, lambda: provider.lookup(Lookup("vns", "a b/../c?d", 7)))
    assert seen == [b"/hashcnet-v2/vns/subscribers/a%20b%2F..%2Fc%3Fd"]


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
        await lookup_with(raising(httpx.ReadTimeout))


async def test_constructor_refuses_unbounded_settings() -> None:
    with pytest.raises(ValueError):
        IspHttpProvider("hashcnet-v2", "http://isp.test", API_KEY, 1.0, 1.0, 0, 120.0)
    with pytest.raises(ValueError):
        IspHttpProvider("hashcnet-v2", "http://isp.test", API_KEY, 0.0, 1.0, 4, 120.0)


# End to end, against a real isp-sim


@dataclass
class Sim:
    base_url: str
    port: int
    simulator: isp_sim.IspSimulator
    providers: list[IspHttpProvider] = field(default_factory=list)

    def adapter(self, group: str = catalog.HASHCNET_V2, **kw: Any) -> IspHttpProvider:
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
    assert await sim.adapter().lookup(VNS_LOOKUP) == catalog.HASHCNET_USER


async def test_sim_lookup_matches_usernames_loosely(sim: Sim) -> None:
    found = await sim.adapter().lookup(Lookup("techminds", "  JeetenAug4 ", 7))
    assert found == catalog.HASHCNET_USER


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
    assert after.days_remaining == catalog.HASHCNET_USER.days_remaining + 30
    assert await provider.status(ORDER) == paid


async def test_sim_state_is_per_isp(sim: Sim) -> None:
    provider = sim.adapter()
    assert isinstance(await provider.pay(ORDER), Paid)
    other = await provider.lookup(Lookup("hons", "jeetenaug4", 7))
    assert other == catalog.HASHCNET_USER


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
    assert after.days_remaining == catalog.HASHCNET_USER.days_remaining + 30


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
    assert after.days_remaining == catalog.HASHCNET_USER.days_remaining


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
    provider = sim.adapter(group=catalog.ARROWNET)
    lookup = Lookup("arrownet", "pradhanang", 7)
    assert await provider.lookup(lookup) == catalog.ARROWNET_USER
    paid = await provider.pay(ARROWNET_ORDER)
    assert isinstance(paid, Paid)
    after = await provider.lookup(lookup)
    assert after is not None
    assert after.current_plan == "50Mbps"
    assert after.days_remaining == catalog.ARROWNET_USER.days_remaining + 90
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
    assert caplog.records  # httpx and httpcore did log at DEBUG
    assert API_KEY not in caplog.text
