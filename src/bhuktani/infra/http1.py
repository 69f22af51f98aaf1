"""The LIVE adapter's HTTP/1.1 client: one ISP host, keep-alive connections, a bounded
pool, llhttp (through httptools, which uvicorn already uses) to read the answers.

Why not a general client: aiohttp cost 0.2-0.35 ms of CPU a LIVE commit over this much
(the ceiling's server CPU a commit, PostgreSQL, 200 in flight, alternated: 0.65-0.71 ms
with a minimal client against 0.89-1.00 with aiohttp; bench/README.md), a fifth of the
server's CPU a commit. The ISP protocol needs little of what a general client offers: no
redirects, no cookies, no proxies, no compression, one host per service group.

What it does:
- At most `max_connections` exchanges at once; the others wait their turn, first come
  first served, inside their deadline.
- Connections are kept alive and reused, the most recently used first. One idle longer
  than `idle_s`, or one the ISP closed or wrote to while idle, is dropped. An answer is
  framed by Content-Length, by chunks, or by the ISP closing the connection.
- The whole exchange (a place, the connection, the request, the whole answer) within
  `connect_timeout_s + timeout_s`; the connection within `connect_timeout_s`, the whole
  answer within `timeout_s` of asking.
- An answer larger than `max_answer_bytes` is not read further: its body is None.
- A connection whose exchange did not end cleanly (a fault, a timeout, a cancellation)
  is closed, never reused.
- An idempotent request (GET) whose reused connection closes before any byte of its
  answer is sent again, on another connection; a POST never is, since the ISP may have
  taken it.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import cast
from urllib.parse import SplitResult, urlsplit

import httptools

from bhuktani.infra.gate import FairGate

# Bytes of status line and headers read beyond the body's bound before an answer is cut.
HEAD_ALLOWANCE_BYTES = 64 * 1024


def split_base_url(base_url: str) -> SplitResult:
    """An ISP's base URL, checked: http or https, a host, perhaps a port and a path."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an ISP base URL is http:// or https:// and a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("an ISP base URL takes no query, fragment or credentials")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ValueError("an ISP base URL's port is out of range") from None
    return parts


class NoAnswer(Exception):
    """The ISP gave no complete HTTP answer. The text names the fault, never the URL."""


class AnswerTimeout(TimeoutError):
    """No connection, or no whole answer, within the deadline; the text says which."""


class _Connection(asyncio.Protocol):
    """One connection and the answer it is waiting for (httptools' parser callbacks)."""

    def __init__(self, max_answer_bytes: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.open = True  # False once the ISP closed it, or it cannot be reused
        self.idle_since = 0.0
        self._max_body = max_answer_bytes
        self._max_total = max_answer_bytes + HEAD_ALLOWANCE_BYTES
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[tuple[int, bytes | None]] | None = None
        self._chunks: list[bytes] = []
        self._body_size = 0
        self._received = 0
        self._status = 0
        self._head_done = False
        self._framed = False  # Content-Length or Transfer-Encoding: not ended by a close

    def ask(self, request: bytes) -> asyncio.Future[tuple[int, bytes | None]]:
        assert self.transport is not None and self.open
        self._answer = asyncio.get_running_loop().create_future()
        self._chunks, self._body_size, self._received = [], 0, 0
        self._status, self._head_done, self._framed = 0, False, False
        self.transport.write(request)
        return self._answer

    @property
    def silent(self) -> bool:
        """Not one byte of an answer to the last request came."""
        return self._received == 0

    @property
    def waiting(self) -> bool:
        return self._answer is not None and not self._answer.done()

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.waiting:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._received += len(data)
        if self._received > self._max_total:  # checked before parsing what came
            if self._head_done:
                self._give(None, reusable=False)
            else:
                self._fail(NoAnswer("a head larger than any answer"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(NoAnswer("switched protocols"))
        except httptools.HttpParserError:
            self._fail(NoAnswer("not HTTP"))

    def eof_received(self) -> bool:
        self.open = False
        if self.waiting:
            self._closed_by_isp()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.waiting:
            self._closed_by_isp()

    def _closed_by_isp(self) -> None:
        if self._head_done and not self._framed:
            self._give(b"".join(self._chunks), reusable=False)  # its end was the close
        elif self._head_done:
            self._fail(NoAnswer("closed in the middle of the answer"))
        else:
            self._fail(NoAnswer("closed without an answer"))

    # httptools.HttpResponseParser's callbacks

    def on_message_begin(self) -> None:
        if not self.waiting:
            self.open = False  # a second answer to one request

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        if not self.waiting:
            return
        self._status = self._parser.get_status_code()
        self._head_done = True
        if self._status < 200 or self._status in (204, 304):
            self._framed = True  # no body follows

    def on_body(self, body: bytes) -> None:
        if not self.waiting:
            return
        self._body_size += len(body)
        if self._body_size > self._max_body:
            self._give(None, reusable=False)
        else:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        if not self.waiting:
            return
        if self._status < 200:  # an interim answer (100 Continue): the real one follows
            self._head_done, self._framed = False, False
            return
        self._give(b"".join(self._chunks), reusable=self._parser.should_keep_alive())

    def _give(self, body: bytes | None, *, reusable: bool) -> None:
        assert self._answer is not None
        if not reusable:
            self.close()
        self._answer.set_result((self._status, body))

    def _fail(self, error: Exception) -> None:
        assert self._answer is not None
        self.close()
        self._answer.set_exception(error)


class Http1Client:
    """Requests to one base URL (http or https, with an optional path prefix)."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        connect_timeout_s: float,
        timeout_s: float,
        max_connections: int,
        max_answer_bytes: int,
        idle_s: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`ssl_context` for https: the system's trusted authorities unless given one."""
        parts = split_base_url(base_url)
        assert parts.hostname is not None
        if connect_timeout_s <= 0 or timeout_s <= 0 or idle_s <= 0:
            raise ValueError("timeouts must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._host = parts.hostname
        self._tls = parts.scheme == "https"
        default_port = 443 if self._tls else 80
        self._port = parts.port or default_port
        self._prefix = parts.path.rstrip("/")
        self._ssl = (ssl_context or ssl.create_default_context()) if self._tls else None
        host = f"[{self._host}]" if ":" in self._host else self._host
        fixed = {"Host": host if self._port == default_port else f"{host}:{self._port}", **headers}
        if any(c in text for item in fixed.items() for text in item for c in "\r\n"):
            raise ValueError("a header name or value holds a line break")
        self._fixed_head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._connect_s = connect_timeout_s
        self._timeout_s = timeout_s
        self._total_s = connect_timeout_s + timeout_s
        self._max_answer_bytes = max_answer_bytes
        self._idle_s = idle_s
        self._gate = FairGate(max_connections)
        self._idle: collections.deque[_Connection] = collections.deque()
        self._closed = False

    @property
    def waiting(self) -> int:
        """Requests waiting for a place now: every connection is busy."""
        return self._gate.waiting

    async def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, bytes | None]:
        """The answer's status and body (None when over the bound). Raises NoAnswer,
        AnswerTimeout, or CancelledError."""
        if self._closed:
            raise NoAnswer("client closed")
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\n{self._fixed_head}"
        if body is not None:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        request = (head + "\r\n").encode("latin-1") + (body or b"")
        retry_allowed = method in ("GET", "HEAD")
        try:
            async with asyncio.timeout(self._total_s) as deadline:
                await self._gate.acquire()
                try:
                    return await self._exchange(request, retry_allowed, deadline)
                finally:
                    self._gate.release()
        except AnswerTimeout:
            raise
        except TimeoutError:
            raise AnswerTimeout("deadline") from None

    async def _exchange(
        self, request: bytes, retry_allowed: bool, deadline: asyncio.Timeout
    ) -> tuple[int, bytes | None]:
        while True:
            conn = self._reuse()
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            # The answer within timeout_s of asking, inside the whole exchange's deadline.
            answer_by = asyncio.get_running_loop().time() + self._timeout_s
            deadline.reschedule(min(deadline.when() or answer_by, answer_by))
            try:
                answer = await conn.ask(request)
            except NoAnswer:
                if reused and retry_allowed and conn.silent:
                    continue  # closed by the ISP while idle: it never saw the request
                raise
            except BaseException:
                conn.close()  # a timeout or a cancellation: the connection is out of step
                raise
            self._keep(conn)
            return answer

    def _reuse(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.open and now - conn.idle_since < self._idle_s:
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._max_answer_bytes),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._tls else None,
                )
        except TimeoutError:
            raise AnswerTimeout("connect timeout") from None
        except (OSError, ssl.SSLError) as exc:
            # The class only: an OSError's text can carry the address.
            raise NoAnswer(f"could not connect: {type(exc).__name__}") from None
        return conn

    def _keep(self, conn: _Connection) -> None:
        if not conn.open or self._closed:
            conn.close()
            return
        now = time.monotonic()
        conn.idle_since = now
        self._idle.append(conn)
        # The least recently used are at the bottom, where reuse may never reach after a
        # burst: closed once stale, so that a quiet hour holds no burst's sockets.
        while not self._idle[0].open or now - self._idle[0].idle_since >= self._idle_s:
            self._idle.popleft().close()

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
