"""Slow and many clients, in each server process: a request's head and body must arrive
within deadlines, and the connections a process holds are bounded, with a few more kept
for `/healthz`.

uvicorn over httptools has neither: it closes a connection idle after an answer
(`timeout_keep_alive`), but a byte every few seconds keeps a half-sent head or body open
for ever, and it accepts until `accept()` fails for want of file descriptors, when the
database, the ISPs and the log are refused them too. So the protocol notes when the
request it reads must be in by (on the first byte of a request, or when its connection
opened; on the end of its head), and one watchdog per process closes, every second, the
connections past their deadline: a few attribute writes a request, no timer per
connection. Past the bound a connection may only ask `/healthz`, once; past the reserve
too it is reset as soon as accepted, so the process never runs out of descriptors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
from dataclasses import dataclass
from time import monotonic
from typing import Any

import orjson
import structlog
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from bhuktani.api.errors import ApiError, body_of
from bhuktani.api.middleware import NO_STORE, NOSNIFF, TIMED_OUT_KEY

log = structlog.get_logger(__name__)

WATCH_EVERY_S = 1.0
# A connection taken past the bound gets this long for its one request's head.
RESERVE_HEAD_TIMEOUT_S = 2.0
# Bytes read while a head is incomplete; past this it is refused (431) and closed.
MAX_HEAD_BYTES = 64 * 1024
_IDLE, _HEAD, _BODY = 0, 1, 2


@dataclass(frozen=True)
class Limits:
    """What one server process allows its clients (docs/OPERATING.md, "Slow and many clients")."""

    head_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keep_alive_s: int = 5
    max_connections: int = 10_000
    # Connections past the bound that may still ask /healthz.
    healthz_reserve: int = 32


def raise_open_file_limit() -> int:
    """The soft limit of open files raised to the hard one, as systemd asks of programs
    that need more than 1,024 and do not use select(); the soft limit it leaves."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _finite(hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):  # not allowed: keep the soft one
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _finite(limit: int) -> int:
    """An open-file limit as a count: "unlimited" is taken as 2**20 descriptors."""
    return 1 << 20 if limit == resource.RLIM_INFINITY else limit


def _open_files() -> int:
    for fd_dir in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(fd_dir))
        except OSError:
            continue
    return 64


def connection_bound(limits: Limits, open_file_limit: int, open_files: int) -> int:
    """Half the descriptors left after start-up go to clients, half stay for what their
    requests open (connections to ISPs and the database, callbacks, log files); the
    reserve for /healthz comes out of the clients' half."""
    by_files = (open_file_limit - open_files) // 2 - limits.healthz_reserve
    return max(1, min(limits.max_connections, by_files))


class GuardedState(ServerState):
    """uvicorn's state shared by a process's connections, with our limits and counts."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits = limits
        self.bound = limits.max_connections
        self.refused = 0
        self.timed_out = 0
        self.too_large = 0


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline on what it reads and the bound."""

    server_state: GuardedState
    # When what the connection reads now must be in (monotonic; 0: nothing due).
    _deadline = 0.0
    _phase = _HEAD
    _head_bytes = 0
    _head_timeout_s = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        state = self.server_state
        held = len(state.connections)
        super().connection_made(transport)
        self._head_timeout_s = state.limits.head_timeout_s
        if held >= state.bound + state.limits.healthz_reserve:
            state.refused += 1
            transport.abort()  # a reset now: its descriptor is free at once
            return
        if held >= state.bound:
            self.app = _healthz_only(self.app)
            self._head_timeout_s = min(self._head_timeout_s, RESERVE_HEAD_TIMEOUT_S)
        self._deadline = monotonic() + self._head_timeout_s

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Still in a head after this read: every byte of it was the head's.
        if self._phase == _HEAD and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self.server_state.too_large += 1
                self._refuse(431, f"The request's head is larger than {MAX_HEAD_BYTES} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEAD
        self._head_bytes = 0
        if not self._deadline:  # a connection's first request is due since it opened
            self._deadline = monotonic() + self._head_timeout_s

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._phase = _BODY
        if self.pipeline:  # queued behind an answer: uvicorn reads nothing more until it starts
            self._deadline = 0.0
        else:
            self._deadline = monotonic() + self.server_state.limits.body_timeout_s

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = _IDLE
        self._deadline = 0.0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._phase == _BODY and not self._deadline:  # a queued request has started
            self._deadline = monotonic() + self.server_state.limits.body_timeout_s

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, msg)

    def time_out(self) -> None:
        """Past its deadline: answer 408 if the app has not answered, and close."""
        cycle = self.cycle
        if self._phase == _HEAD and cycle is not None and not cycle.response_complete:
            # A head sent ahead while the connection's previous request is answered: uvicorn
            # reads nothing until that answer is out, so it is due a while after it.
            self._deadline = monotonic() + self._head_timeout_s
            return
        self._deadline = 0.0
        self.server_state.timed_out += 1
        part = "head" if self._phase == _HEAD else "body"
        if self._phase == _BODY and self.cycle is not None:
            self.cycle.scope[TIMED_OUT_KEY] = True  # type: ignore[literal-required]
        limits = self.server_state.limits
        timeout_s = self._head_timeout_s if part == "head" else limits.body_timeout_s
        self._refuse(408, f"The request's {part} did not arrive within {timeout_s:g} s")

    def _refuse(self, status: int, details: str) -> None:
        """An error envelope written past the app (no request reached it, or it cannot
        answer), then the connection closed."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self._phase == _BODY:  # the request's own cycle: has the app begun its answer?
            answering = cycle is not None and cycle.response_started
        else:  # no cycle of its own yet: is the previous request's answer still going out?
            answering = cycle is not None and not cycle.response_complete
        if not answering:  # else the answer would land inside another: close alone
            self.transport.write(_raw_answer(status, details, self.server_state.default_headers))
            if cycle is not None and self._phase == _BODY:
                cycle.response_started = True  # the app's answer, if any, is dropped
        self.transport.close()


def _raw_answer(status: int, details: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    code = "1017" if status >= 500 else "4000"
    body, headers = _closing_envelope(ApiError(code, details, http_status=status))
    lines = [name + b": " + value + b"\r\n" for name, value in (*default_headers, *headers)]
    return STATUS_LINE[status] + b"".join(lines) + b"\r\n" + body


def _closing_envelope(error: ApiError) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A refusal's envelope and the headers of an answer that closes its connection."""
    body = orjson.dumps(body_of(error))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        NO_STORE,
        NOSNIFF,
    ]
    return body, headers


Asgi = Any  # uvicorn's ASGI3Application


def _healthz_only(app: Asgi) -> Asgi:
    """The app for a connection taken past the bound: `/healthz` once, else 503."""

    async def reserved(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/healthz":
            error = ApiError("1018", "Too many connections; try again", http_status=503)
            body, headers = _closing_envelope(error)
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return

        async def closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, closing)

    return reserved


class Watchdog:
    """Once a second: close the connections past their deadline, and say how many were
    closed or refused since the last line (one line, not one per connection)."""

    def __init__(self, state: GuardedState) -> None:
        self._state = state
        self._said = (0, 0, 0)

    def start(self) -> asyncio.Task[None]:
        state = self._state
        open_file_limit = _finite(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        state.bound = connection_bound(state.limits, open_file_limit, _open_files())
        log.info(
            "connections_bounded",
            pid=os.getpid(),
            bound=state.bound,
            healthz_reserve=state.limits.healthz_reserve,
            open_file_limit=open_file_limit,
            head_timeout_s=state.limits.head_timeout_s,
            body_timeout_s=state.limits.body_timeout_s,
            keep_alive_s=state.limits.keep_alive_s,
        )
        return asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            self.sweep(monotonic())

    def sweep(self, now: float) -> None:
        state = self._state
        for connection in list(state.connections):
            if isinstance(connection, GuardedProtocol) and 0 < connection._deadline < now:
                connection.time_out()
        counts = (state.timed_out, state.refused, state.too_large)
        if counts != self._said:
            timed_out, refused, too_large = (a - b for a, b in zip(counts, self._said, strict=True))
            self._said = counts
            log.warning(
                "connections_closed",
                timed_out=timed_out,
                refused=refused,
                head_too_large=too_large,
                open=len(state.connections),
                bound=state.bound,
            )
