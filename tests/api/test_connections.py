"""The protocol's deadlines and bound (api.connections) over a transport that records what
was written, the clock moved by hand: the cases a real socket makes slow or racy."""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Any

from uvicorn.config import Config

from bhuktani.api.connections import GuardedProtocol, GuardedState, Limits, Watchdog

LATE_BY_S = 11.0


class Recorded(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class App:
    """Answers each request once `release` is set; the paths it was called for."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        more_body = scope["method"] == "POST"
        while more_body:  # the whole body first, as our endpoints read it
            message = await receive()
            more_body = message.get("more_body", False)
        await self.release.wait()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"{}"})


def connect(
    app: App, state: GuardedState | None = None
) -> tuple[GuardedProtocol, Recorded, GuardedState]:
    config = Config(app=app, http=GuardedProtocol, lifespan="off", log_config=None, ws="none")
    config.load()
    state = state or GuardedState(Limits())
    protocol = GuardedProtocol(config=config, server_state=state, app_state={})
    transport = Recorded()
    protocol.connection_made(transport)
    return protocol, transport, state


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


GET = b"GET /healthz HTTP/1.1\r\nHost: bhuktani\r\n\r\n"


async def test_a_late_head_is_answered_408_and_closed() -> None:
    protocol, transport, state = connect(App())
    protocol.data_received(b"GET /healthz HTTP/1.1\r\nHo")
    Watchdog(state).sweep(monotonic() + 5)
    assert not transport.closed
    Watchdog(state).sweep(monotonic() + LATE_BY_S)
    assert transport.written.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b'"error_code":"4000"' in transport.written
    assert transport.closed


async def test_a_late_body_is_answered_408_and_its_request_marked() -> None:
    protocol, transport, state = connect(App())
    protocol.data_received(b"POST /api/balance/ HTTP/1.1\r\nHost: b\r\nContent-Length: 10\r\n\r\n{")
    await settle()
    Watchdog(state).sweep(monotonic() + LATE_BY_S)
    assert transport.written.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b"body did not arrive within 10 s" in transport.written
    assert protocol.cycle.scope["bhuktani.timed_out"] is True  # type: ignore[typeddict-item]


async def test_a_request_being_answered_is_not_timed_out() -> None:
    app = App()
    protocol, transport, state = connect(app)
    protocol.data_received(GET)
    await settle()
    Watchdog(state).sweep(monotonic() + 3600)
    assert transport.written == b"" and not transport.closed
    app.release.set()
    await settle()
    assert transport.written.startswith(b"HTTP/1.1 200 OK")


async def test_a_head_sent_ahead_of_an_answer_is_due_after_it() -> None:
    """Pipelined: the second head waits on the first answer, which takes long."""
    app = App()
    protocol, transport, state = connect(app)
    protocol.data_received(GET + b"GET /healthz HTTP/1.1\r\nHo")
    await settle()
    Watchdog(state).sweep(monotonic() + LATE_BY_S)
    assert transport.written == b"" and not transport.closed, "the first answer was cut"
    app.release.set()
    await settle()
    assert transport.written.startswith(b"HTTP/1.1 200 OK")
    Watchdog(state).sweep(monotonic() + LATE_BY_S)
    assert transport.written.count(b"HTTP/1.1 ") == 2
    assert b"HTTP/1.1 408 Request Timeout" in transport.written and transport.closed


async def test_a_body_queued_behind_an_answer_is_due_once_its_request_starts() -> None:
    app = App()
    protocol, transport, state = connect(app)
    second = b"POST /api/balance/ HTTP/1.1\r\nHost: b\r\nContent-Length: 10\r\n\r\n{"
    protocol.data_received(GET + second)
    await settle()
    Watchdog(state).sweep(monotonic() + LATE_BY_S)
    assert transport.written == b""
    app.release.set()
    await settle()
    assert app.paths == ["/healthz", "/api/balance/"]
    Watchdog(state).sweep(monotonic() + LATE_BY_S)
    assert transport.written.startswith(b"HTTP/1.1 200 OK")
    assert b"HTTP/1.1 408 Request Timeout" in transport.written and transport.closed


async def test_past_the_bound_healthz_once_past_the_reserve_a_reset() -> None:
    app = App()
    app.release.set()
    state = GuardedState(Limits(max_connections=2, healthz_reserve=1))
    state.bound = 2
    for _ in range(2):
        connect(app, state)
    reserved, reserved_transport, _ = connect(app, state)
    _, refused_transport, _ = connect(app, state)
    assert refused_transport.aborted and state.refused == 1
    assert not reserved_transport.closed
    reserved.data_received(b"GET /api/balance/ HTTP/1.1\r\nHost: b\r\n\r\n")
    await settle()
    assert reserved_transport.written.startswith(b"HTTP/1.1 503 Service Unavailable")
    assert b'"error_code":"1018"' in reserved_transport.written
    assert b"x-content-type-options: nosniff" in reserved_transport.written
    assert app.paths == []
