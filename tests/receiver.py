"""A merchant's callback receiver for tests: records every request as received, can be
told to fail the first N, and answers as a real server does, over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def fields(self) -> dict[str, str]:
        content_type = self.headers["content-type"]
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + self.body
        )
        return {
            str(part.get_param("name", header="content-disposition")): part.get_content()
            for part in message.iter_parts()
        }


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0
    status_when_failing: int = 503
    headers_when_failing: dict[str, str] = field(default_factory=dict)
    # Each answer waits this long; in_flight counts the requests being answered.
    delay_s: float = 0.0
    in_flight: int = 0
    most_in_flight: int = 0

    async def handle(self, request: Request) -> Response:
        self.received.append(Received(dict(request.headers), await request.body()))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        if len(self.received) <= self.fail_first:
            return Response(status_code=self.status_when_failing, headers=self.headers_when_failing)
        return Response("ok")


@contextlib.asynccontextmanager
async def receiving(path: str = "/dlr") -> AsyncIterator[Receiver]:
    port = free_port()
    receiver = Receiver(url=f"http://127.0.0.1:{port}{path}")
    app = Starlette(routes=[Route(path, receiver.handle, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task


@dataclass
class RawReceiver:
    """A receiver on a bare socket that misbehaves after reading the whole request: what
    it did is counted here, for the test to assert on."""

    url: str
    requests: int = 0
    body_bytes_sent: int = 0
    closed_by_client: int = 0
    answering: asyncio.Event = field(default_factory=asyncio.Event)


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    await reader.readexactly(length)


@contextlib.asynccontextmanager
async def _raw_server(
    answer: Callable[[RawReceiver, asyncio.StreamWriter], Awaitable[None]],
    *,
    bound_s: float,
) -> AsyncIterator[RawReceiver]:
    """Loopback only; every connection is cut after bound_s whatever it is doing."""
    port = free_port()
    receiver = RawReceiver(url=f"http://127.0.0.1:{port}/dlr")
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            async with asyncio.timeout(bound_s):
                await _read_request(reader)
                receiver.requests += 1
                receiver.answering.set()
                await answer(receiver, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            receiver.closed_by_client += 1
        except (TimeoutError, asyncio.CancelledError):
            # Bounded, or cut at teardown: ending normally keeps asyncio's stream callback
            # from reporting a cancelled handler.
            pass
        finally:
            handlers.discard(task)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield receiver
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


@contextlib.asynccontextmanager
async def dripping(every_s: float = 0.5, bound_s: float = 30.0) -> AsyncIterator[RawReceiver]:
    """Answers `200 OK`, `Content-Length: 1000`, then one byte of the body every every_s:
    a client whose timeout is per read waits forever (to bound_s)."""

    async def answer(receiver: RawReceiver, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        await writer.drain()
        for _ in range(1000):
            await asyncio.sleep(every_s)
            writer.write(b"x")
            await writer.drain()
            receiver.body_bytes_sent += 1

    async with _raw_server(answer, bound_s=bound_s) as receiver:
        yield receiver


FLOOD_CHUNK = b"x" * 65536


@contextlib.asynccontextmanager
async def flooding(
    total_bytes: int = 50 * 1024**2, bound_s: float = 30.0
) -> AsyncIterator[RawReceiver]:
    """Answers `200 OK` with a body of total_bytes, sent as fast as the client takes it.
    A small send buffer keeps what the kernel holds for a client that stopped reading
    small, so that body_bytes_sent tells what the client read."""

    async def answer(receiver: RawReceiver, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {total_bytes}\r\n\r\n".encode())
        while receiver.body_bytes_sent < total_bytes:
            writer.write(FLOOD_CHUNK)
            await writer.drain()
            receiver.body_bytes_sent += len(FLOOD_CHUNK)
            await asyncio.sleep(0)

    async with _raw_server(answer, bound_s=bound_s) as receiver:
        yield receiver
