"""How an endpoint is served and what every endpoint reads: the JSON response, the
gateway, the caller's address, a look-up's fields. app.py assembles the routes; each
module of api/ that serves calls installs its own with `serve`."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bhuktani import runtime
from bhuktani.api.body import parse_object, query_object, read_limited, token_of
from bhuktani.api.middleware import Endpoint


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def gateway_of(request: Request) -> runtime.Gateway:
    gateway: runtime.Gateway = request.app.state.gateway
    return gateway


def client_of(request: Request) -> str:
    """The client's address, counted by the rate limits: the socket's peer, or the client
    a trusted proxy names (BHUKTANI_FORWARDED_ALLOW_IPS, applied by uvicorn)."""
    return request.client.host if request.client is not None else "unknown"


async def body_data(request: Request) -> dict[str, Any]:
    """A JSON object body, required."""
    gateway = gateway_of(request)
    return parse_object(await read_limited(request, gateway.settings.max_body_bytes))


async def lookup_data(request: Request) -> dict[str, Any]:
    """Look-ups take their fields from the query string or a JSON body (the body wins)."""
    gateway = gateway_of(request)
    data = query_object(request)
    data.update(
        parse_object(await read_limited(request, gateway.settings.max_body_bytes), required=False)
    )
    return data


def token_in(data: dict[str, Any], request: Request) -> str | None:
    """The token of the body's `token` field or the `Authorization: Token` header."""
    return token_of(data, request)


def serve(
    app: Starlette,
    path: str,
    endpoint: Endpoint,
    method: str,
    name: str,
    openapi_extra: dict[str, Any] | None = None,
) -> None:
    """Serve an API path (with and without its trailing slash): RequestContext calls the
    endpoint directly, and the router keeps a plain Starlette route of it so that a wrong
    method still answers 405, not 404. Our endpoints read the request themselves, so
    FastAPI's per-request machinery (dependency solving, an exit stack) is ~70 us of CPU a
    request for nothing (bench/README.md): FastAPI only describes the path in the OpenAPI
    document, from routes that never serve."""
    app.router.routes.append(Route(path, endpoint, methods=[method], name=name))
    app.router.routes.append(
        Route(path.rstrip("/"), endpoint, methods=[method], name=name + "_bare")
    )
    direct: dict[str, dict[str, Endpoint]] = app.state.direct
    for served in (path, path.rstrip("/")):
        direct.setdefault(served, {})[method] = endpoint
    documented: list[APIRoute] = app.state.documented
    documented.append(
        APIRoute(path, endpoint, methods=[method], name=name, openapi_extra=openapi_extra)
    )
