"""Per-request context: a request id, one log line per request, and the last line of
defence that turns any unexpected exception into a 1017 envelope."""

from __future__ import annotations

import os
import re
import time
from contextvars import ContextVar

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bhuktani import logs
from bhuktani.errors import server_error

log = structlog.get_logger()
_REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def current_request_id() -> str:
    return _REQUEST_ID.get()


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _SAFE_ID.match(candidate):
                return candidate
    return os.urandom(16).hex()


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        id_token = _REQUEST_ID.set(request_id)
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
                    headers.append((b"x-request-id", request_id.encode()))
                    message = {**message, "headers": headers}
                await send(message)

            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                log.exception("server_error")
                if not response_started:
                    await self._crash(send_with_id, request_id)
            finally:
                duration_ms = round((time.perf_counter() - started) * 1000, 2)
                logs.request_line(status, duration_ms)
                _REQUEST_ID.reset(id_token)

    async def _crash(self, send: Send, request_id: str) -> None:
        error = server_error(request_id)
        body = orjson.dumps(error.body())
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
