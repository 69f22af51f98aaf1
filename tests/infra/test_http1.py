"""The LIVE adapter's HTTP/1.1 client against scripted sockets: what it sends, how it
frames an answer, when it reuses, drops or retries a connection, its bounds and
deadlines, and TLS. The adapter's mapping of answers is in tests/isps/test_adapter.py."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bhuktani.infra.http1 import AnswerTimeout, Http1Client, NoAnswer, split_base_url
from bhuktani.settings import Settings

pytestmark = pytest.mark.asyncio

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
# At the end of a reply: the scripted ISP hangs up once it has written the rest.
HANG_UP = b"<hang up>"


@dataclass
class Seen:
    """What a scripted ISP saw: one entry per connection, the requests' heads and bodies."""

    connections: list[list[bytes]] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0

    @property
    def requests(self) -> list[bytes]:
        return [request for connection in self.connections for request in connection]


# Given the connection's number and the request's number on it, and the request: what to
# write back (None: hang up without a word).
Script = Callable[[int, int, bytes], Awaitable[bytes | None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + (await reader.readexactly(length) if length else b"")


@asynccontextmanager
async def scripted(
    script: Script, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(seen.connections)
        requests: list[bytes] = []
        seen.connections.append(requests)
        seen.open_now += 1
        seen.most_open = max(seen.most_open, seen.open_now)
        try:
            while True:
                try:
                    request = await read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                requests.append(request)
                reply = await script(number, len(requests) - 1, request)
                if reply is None:
                    return
                writer.write(reply.removesuffix(HANG_UP))
                await writer.drain()
                if reply.endswith(HANG_UP):
                    return
        finally:
            seen.open_now -= 1
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()


def replying(*replies: bytes) -> Script:
    """The same replies on every connection, request by request; the last one repeats."""

    async def script(connection: int, number: int, request: bytes) -> bytes | None:
        return replies[min(number, len(replies) - 1)]

    return script


def client(base_url: str, **kw: object) -> Http1Client:
    options: dict[str, object] = {
        "connect_timeout_s": 1.0,
        "timeout_s": 2.0,
        "max_connections": 4,
        "max_answer_bytes": 1024,
        **kw,
    }
    return Http1Client(base_url, {"Authorization": "Bearer key"}, **options)  # type: ignore[arg-type]


@asynccontextmanager
async def talking(script: Script, **kw: object) -> AsyncIterator[tuple[Http1Client, Seen]]:
    async with scripted(script) as (base_url, seen):
        http = client(base_url, **kw)
        try:
            yield http, seen
        finally:
            await http.aclose()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def handled(handler: Handler, **kw: object) -> AsyncIterator[Http1Client]:
    """A client of an ISP whose every connection `handler` serves as it likes."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    http = client(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", **kw)
    try:
        yield http
    finally:
        await http.aclose()
        server.close()
        await server.wait_closed()


# What is sent


async def test_the_request_carries_host_headers_and_body() -> None:
    async with scripted(replying(OK)) as (base_url, seen):
        http = client(base_url + "/isp/api/")
        try:
            assert await http.request("POST", "/payments", b'{"a":1}', "application/json") == (
                200,
                b"ok",
            )
        finally:
            await http.aclose()
    port = base_url.rsplit(":", 1)[1]
    head, _, body = seen.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /isp/api/payments HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}" in lines
    assert "Authorization: Bearer key" in lines
    assert "Content-Type: application/json" in lines
    assert "Content-Length: 7" in lines
    assert body == b'{"a":1}'


async def test_a_get_has_no_body_headers() -> None:
    async with talking(replying(OK)) as (http, seen):
        await http.request("GET", "/payments/1")
    assert b"Content-Length" not in seen.requests[0]
    assert seen.requests[0].startswith(b"GET /payments/1 HTTP/1.1\r\n")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://isp",
        "isp.example",
        "http://",
        "http://isp/?a=1",
        "http://u:p@isp",
        "http://isp:99999",
    ],
)
async def test_a_base_url_that_is_not_one_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        split_base_url(url)
    # At start-up, by the settings, not at the first payment.
    with pytest.raises(ValueError, match="ISP base URL"):
        Settings(isps={"arrownet": {"base_url": url}})


async def test_a_header_with_a_line_break_is_refused() -> None:
    # An API key pasted with its newline would otherwise end the head early.
    with pytest.raises(ValueError, match="line break"):
        Http1Client(
            "http://isp.example",
            {"Authorization": "Bearer key\r\nX-Injected: 1"},
            connect_timeout_s=1,
            timeout_s=1,
            max_connections=1,
            max_answer_bytes=1,
        )


async def test_a_base_url_may_have_a_port_and_a_path() -> None:
    url = "https://isp.example:8443/billing"
    assert Settings(isps={"hashcnet-v2": {"base_url": url}}).isps["hashcnet-v2"].base_url == url


# How an answer is framed


@pytest.mark.parametrize(
    "reply",
    [
        OK,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\no\r\n1\r\nk\r\n0\r\n\r\n",
        # A 100 Continue before the answer.
        b"HTTP/1.1 100 Continue\r\n\r\n" + OK,
    ],
)
async def test_an_answer_is_read_whole(reply: bytes) -> None:
    async with talking(replying(reply)) as (http, seen):
        assert await http.request("GET", "/x") == (200, b"ok")
        assert await http.request("GET", "/x") == (200, b"ok")
    assert len(seen.connections) == 1  # and the connection kept


async def test_an_answer_ended_by_the_close_is_read_and_the_connection_not_kept() -> None:
    async def script(connection: int, number: int, request: bytes) -> bytes | None:
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok" + HANG_UP

    async with scripted(script) as (base_url, seen):
        http = client(base_url)
        try:
            # No length, no chunks: the body ends with the connection.
            assert await http.request("GET", "/x") == (200, b"ok")
            assert await http.request("GET", "/x") == (200, b"ok")
        finally:
            await http.aclose()
    assert len(seen.connections) == 2


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
)
async def test_an_answer_that_ends_the_connection_is_obeyed(reply: bytes) -> None:
    # The scripted ISP would read on: the client must not send there.
    async with talking(replying(reply)) as (http, seen):
        await http.request("GET", "/x")
        await http.request("GET", "/x")
    assert [len(requests) for requests in seen.connections] == [1, 1]


@pytest.mark.parametrize(
    "reply, fault",
    [
        (b"", "closed without an answer"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok" + HANG_UP,
            "closed in the middle of the answer",
        ),
        (b"SMTP ready\r\n\r\n", "not HTTP"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
            "switched protocols",
        ),
    ],
)
async def test_a_broken_answer_is_no_answer(reply: bytes, fault: str) -> None:
    async def script(connection: int, number: int, request: bytes) -> bytes | None:
        return reply or None

    async with talking(script) as (http, seen):
        with pytest.raises(NoAnswer, match=fault):
            await http.request("POST", "/payments", b"{}")
    assert len(seen.requests) == 1


# Bounds


async def test_an_oversized_body_is_none_and_the_connection_dropped() -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000

    async def big_first(connection: int, number: int, request: bytes) -> bytes | None:
        return big if connection == 0 else OK

    async with talking(big_first) as (http, seen):
        assert await http.request("GET", "/x") == (200, None)
        assert await http.request("GET", "/x") == (200, b"ok")
    assert len(seen.connections) == 2


@pytest.mark.parametrize("end", [b"", b"\r\n\r\nok"])
async def test_a_head_past_the_bound_is_no_answer(end: bytes) -> None:
    # Whether or not it would end: read no further than the bound.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: " + b"y" * 100_000 + end
    async with talking(replying(head)) as (http, _):
        with pytest.raises(NoAnswer, match="a head larger than any answer"):
            await http.request("GET", "/x")


async def test_no_more_connections_than_the_bound_and_every_request_served() -> None:
    async def slow(connection: int, number: int, request: bytes) -> bytes | None:
        await asyncio.sleep(0.05)
        return OK

    async with talking(slow, max_connections=2) as (http, seen):
        answers = await asyncio.gather(*(http.request("GET", f"/{i}") for i in range(10)))
    assert answers == [(200, b"ok")] * 10
    assert seen.most_open == 2
    assert len(seen.connections) == 2


async def test_waiting_for_a_place_counts_in_the_deadline() -> None:
    async def stall(connection: int, number: int, request: bytes) -> bytes | None:
        await asyncio.sleep(5)
        return OK

    loop = asyncio.get_running_loop()
    options = {"max_connections": 1, "connect_timeout_s": 0.1, "timeout_s": 0.5}
    async with talking(stall, **options) as (http, _):
        first = asyncio.create_task(http.request("GET", "/a"))  # holds the place 0.5 s
        await asyncio.sleep(0)
        started = loop.time()
        with pytest.raises(AnswerTimeout):
            await http.request("GET", "/b")
        # 0.6 s from asking (connect + timeout), not 0.5 s for the place and 0.5 s more.
        assert loop.time() - started < 0.85
        with pytest.raises(AnswerTimeout):
            await first


# Deadlines, cancellation


async def test_the_answer_must_come_within_the_timeout() -> None:
    async def stall(connection: int, number: int, request: bytes) -> bytes | None:
        await asyncio.sleep(5)
        return OK

    async with talking(stall, timeout_s=0.2) as (http, _):
        started = asyncio.get_running_loop().time()
        with pytest.raises(AnswerTimeout):
            await http.request("GET", "/x")
        # timeout_s from asking, not timeout_s + connect_timeout_s (1 s here).
        assert asyncio.get_running_loop().time() - started < 0.9


async def test_a_cancelled_exchange_closes_its_connection_and_frees_its_place() -> None:
    hung_up = asyncio.Event()
    connections: list[bytes] = []

    async def first_stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(await read_request(reader))
        if len(connections) == 1:
            await reader.read()  # no answer; until the client hangs up
            hung_up.set()
        else:
            writer.write(OK)
            await writer.drain()
        writer.close()

    async with handled(first_stalls, max_connections=1) as http:
        stalled = asyncio.create_task(http.request("GET", "/x"))
        await asyncio.sleep(0.1)
        stalled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stalled
        # Its answer would come late, to the wrong request: the connection is closed...
        await asyncio.wait_for(hung_up.wait(), 1.0)
        # ...and its place taken by the next request, on a new one.
        assert await http.request("GET", "/y") == (200, b"ok")
    assert len(connections) == 2


async def test_an_unreachable_isp_is_no_answer() -> None:
    async with scripted(replying(OK)) as (base_url, _):
        pass  # closed: nobody listens there now
    http = client(base_url)
    with pytest.raises(NoAnswer, match="could not connect: ConnectionRefusedError"):
        await http.request("GET", "/x")


# Reuse and retry


async def test_a_connection_the_isp_closed_while_idle_is_not_used() -> None:
    connections: list[bytes] = []

    async def answer_then_hang_up(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connections.append(await read_request(reader))
        writer.write(OK)  # keep-alive by default, then closed: the ISP's idle timeout
        await writer.drain()
        writer.close()

    async with handled(answer_then_hang_up) as http:
        assert await http.request("POST", "/a", b"{}") == (200, b"ok")
        await asyncio.sleep(0.05)
        # Not sent on the closed connection, where it would be lost: on a new one.
        assert await http.request("POST", "/b", b"{}") == (200, b"ok")
    assert len(connections) == 2


async def test_a_get_on_a_connection_closed_before_answering_is_sent_again() -> None:
    # The ISP hangs up on the second request of a connection without answering: the race
    # of a keep-alive connection closed just as it is reused.
    async def one_per_connection(connection: int, number: int, request: bytes) -> bytes | None:
        return OK if number == 0 else None

    async with talking(one_per_connection) as (http, seen):
        assert await http.request("GET", "/a") == (200, b"ok")
        assert await http.request("GET", "/b") == (200, b"ok")
    assert [len(requests) for requests in seen.connections] == [2, 1]


async def test_a_post_is_never_sent_twice() -> None:
    async def one_per_connection(connection: int, number: int, request: bytes) -> bytes | None:
        return OK if number == 0 else None

    async with talking(one_per_connection) as (http, seen):
        await http.request("POST", "/payments", b"{}")
        with pytest.raises(NoAnswer, match="closed without an answer"):
            await http.request("POST", "/payments", b"{}")
    assert len(seen.requests) == 2


async def test_a_connection_idle_too_long_is_dropped() -> None:
    async with talking(replying(OK), idle_s=0.05) as (http, seen):
        await http.request("GET", "/a")
        await asyncio.sleep(0.1)
        await http.request("GET", "/b")
    assert len(seen.connections) == 2


async def test_a_burst_s_connections_are_closed_once_stale_while_one_stays_in_use() -> None:
    async def slow(connection: int, number: int, request: bytes) -> bytes | None:
        await asyncio.sleep(0.05)
        return OK

    async with talking(slow, idle_s=0.2) as (http, seen):
        await asyncio.gather(*(http.request("GET", f"/{i}") for i in range(3)))
        assert seen.open_now == 3
        for _ in range(6):  # the most recently used connection, again and again
            await http.request("GET", "/again")
        await asyncio.sleep(0.05)
        assert seen.open_now == 1
    assert len(seen.connections) == 3


async def test_bytes_written_to_an_idle_connection_drop_it() -> None:
    connections: list[bytes] = []

    async def stray_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(await read_request(reader))
        writer.write(OK)
        if len(connections) == 1:
            await asyncio.sleep(0.05)
            writer.write(OK)  # an answer to nothing: the next request's would be out of step
            await asyncio.sleep(0.2)
            writer.write(OK)
        await writer.drain()
        await reader.read()
        writer.close()

    async with handled(stray_answer) as http:
        assert await http.request("GET", "/a") == (200, b"ok")
        await asyncio.sleep(0.1)
        assert await http.request("GET", "/b") == (200, b"ok")
    assert len(connections) == 2


async def test_two_answers_to_one_request_drop_the_connection() -> None:
    async with talking(replying(OK + OK, OK)) as (http, seen):
        assert await http.request("GET", "/a") == (200, b"ok")
        assert await http.request("GET", "/b") == (200, b"ok")
    assert len(seen.connections) == 2


# TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_is_spoken_and_the_certificate_checked(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    async with scripted(replying(OK), ssl_context=server_side) as (base_url, seen):
        trusting = ssl.create_default_context(cafile=str(cert))
        http = client(base_url, ssl_context=trusting)
        try:
            assert await http.request("GET", "/x") == (200, b"ok")
        finally:
            await http.aclose()
        # The system's authorities do not know this certificate: no answer, nothing sent.
        default = client(base_url)
        with pytest.raises(NoAnswer, match="could not connect"):
            await default.request("POST", "/payments", b"{}")
        await default.aclose()
    assert len(seen.requests) == 1
