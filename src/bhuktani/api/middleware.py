"""Per-request context: a request id, one log line per request, the headers every answer
carries, and the last line of defence that turns any unexpected exception into a 1017
envelope. The API's own paths are called from here directly, past the router."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping

import orjson
import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bhuktani import logs
from bhuktani.api.errors import body_of, server_error
from bhuktani.errors import Refusal

Endpoint = Callable[[Request], Awaitable[Response]]
# path -> method -> endpoint
Direct = Mapping[str, Mapping[str, Endpoint]]

log = structlog.get_logger()
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# On every answer: a browser must not guess another type than the one we send (an error
# envelope echoing a client's field is never run as HTML), and nothing that carries a
# balance or a payment is kept by a cache on the way, unless the answer says how it may be
# kept (the API documents' scripts, which never change while a version runs).
NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_STORE = (b"cache-control", b"no-store")
# Set in the scope by api.serving when it closed the connection.
TIMED_OUT_KEY = "bhuktani.timed_out"
# The request line's status for a request whose client went away before its answer (nginx's
# 499); 408 when the server closed it, its body late (api.serving).
CLIENT_CLOSED = 499
TIMED_OUT = 408


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _SAFE_ID.match(candidate):
                return candidate
    return os.urandom(16).hex()


class RequestContext:
    """`direct` routes are called here, and a Refusal they raise answered with
    `on_api_error`: the same endpoint and envelope as through Starlette's router and its
    exception middleware, whose layers took ~15 % of the server's CPU on a details call.
    Any other path or method goes on to `app`, whose router answers 404 and 405."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        direct: Direct,
        on_api_error: Callable[[Refusal], Response],
    ) -> None:
        self.app = app
        self._direct = direct
        self._on_api_error = on_api_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        # The path only: look-ups may carry a token in the query string.
        with logs.fields(request_id=request_id, method=scope["method"], path=scope["path"]):
            started = time.perf_counter()
            status = 500
            response_started = False

            async def send_with_id(message: Message) -> None:
                nonlocal status, response_started
                if message["type"] == "http.response.start":
                    status = message["status"]
                    response_started = True
                    headers = list(message.get("headers", []))
                    if not any(name == b"cache-control" for name, _ in headers):
                        headers.append(NO_STORE)
                    headers.append(NOSNIFF)
                    headers.append((b"x-request-id", request_id.encode()))
                    message = {**message, "headers": headers}
                await send(message)

            try:
                endpoint = self._direct.get(scope["path"], {}).get(scope["method"])
                if endpoint is None:
                    await self.app(scope, receive, send_with_id)
                else:
                    await self._call(endpoint, scope, receive, send_with_id)
            except ClientDisconnect:
                # Nobody to answer, and no fault of ours: no traceback.
                status = TIMED_OUT if scope.get(TIMED_OUT_KEY) else CLIENT_CLOSED
            except Exception:
                log.exception("server_error")
                if not response_started:
                    await self._crash(send_with_id, request_id)
            finally:
                duration_ms = round((time.perf_counter() - started) * 1000, 2)
                logs.request_line(status, duration_ms)

    async def _call(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await endpoint(Request(scope, receive, send))
        except Refusal as exc:
            response = self._on_api_error(exc)
        await response(scope, receive, send)

    async def _crash(self, send: Send, request_id: str) -> None:
        error = server_error(request_id)
        body = orjson.dumps(body_of(error))
        await send(
            {
                "type": "http.response.start",
                "status": error.http_status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
