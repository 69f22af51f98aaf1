"""The HTTP layer: parse, call one flow, render. No business rule lives here."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import structlog
from fastapi.routing import APIRoute
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bhuktani import logs, metrics, runtime
from bhuktani.api import charges, credit_requests, disputes, docs, openapi, statements
from bhuktani.api.body import parse_object, read_limited, token_of
from bhuktani.api.errors import ApiError, body_of, code_of, headers_of, status_of
from bhuktani.api.middleware import Endpoint, RequestContext
from bhuktani.api.routing import JsonResponse, client_of, gateway_of, lookup_data, serve
from bhuktani.books import health, settlement
from bhuktani.errors import Refusal
from bhuktani.logs import configure_logging
from bhuktani.payments import commit as commit_flow
from bhuktani.payments import details as details_flow
from bhuktani.payments import lookup
from bhuktani.payments import use as use_flow
from bhuktani.services import registry
from bhuktani.services.base import ServiceGroup
from bhuktani.services.single_step import SingleStepService
from bhuktani.settings import Settings, get_settings
from bhuktani.web import app as web

log = structlog.get_logger()

# The collector's thresholds while serving. With CPython's defaults (700, 10, 10) and 1,000
# LIVE commits in flight, collection took 12-15 % of the server's CPU: a request lives long
# enough for its objects to be promoted, then rescanned by every older collection. Collected
# every 20,000 allocations, most of them die before a scan, and collection took 1-2 %.
SERVING_GC_THRESHOLDS = (20_000, 20, 10)


def error_response(error: Refusal) -> JsonResponse:
    return JsonResponse(body_of(error), status_code=status_of(error), headers=headers_of(error))


def api_error_response(error: Refusal) -> JsonResponse:
    """A refusal an endpoint raised: its envelope, its code on the request's log line."""
    logs.bind(error_code=code_of(error), details=error.details)
    return error_response(error)


def _document_routes(app: Starlette) -> None:
    """`/openapi.json`, written once on first use, and its pages, `/docs` and `/redoc`."""
    written: list[bytes] = []

    async def openapi_endpoint(request: Request) -> Response:
        if not written:
            written.append(orjson.dumps(openapi.document(app.state.documented)))
        return Response(written[0], media_type="application/json")

    app.router.routes.append(Route("/openapi.json", openapi_endpoint, methods=["GET"]))
    app.router.routes.extend(docs.routes())


Flow = Callable[[runtime.Gateway, ServiceGroup, dict[str, Any], str | None, str], Awaitable[Any]]


def _group_route(app: Starlette, verb: str, group: ServiceGroup, flow: Flow) -> None:
    async def endpoint(request: Request) -> JsonResponse:
        gateway = gateway_of(request)
        raw = await read_limited(request, gateway.settings.max_body_bytes)
        data = parse_object(raw)
        token = token_of(data, request)
        return JsonResponse(await flow(gateway, group, data, token, client_of(request)))

    path = f"/api/servicegroup/{verb}/{group.slug}/"
    name = f"{verb}_{group.slug.replace('-', '_')}"
    serve(app, path, endpoint, "POST", name, openapi.group_operation(verb, group))


def _use_route(app: Starlette, service: SingleStepService) -> None:
    async def endpoint(request: Request) -> JsonResponse:
        gateway = gateway_of(request)
        raw = await read_limited(request, gateway.settings.max_body_bytes)
        data = parse_object(raw)
        token = token_of(data, request)
        return JsonResponse(await use_flow.use(gateway, service, data, token, client_of(request)))

    path = f"/api/use/{service.slug}/"
    name = f"use_{service.slug.replace('-', '_')}"
    serve(app, path, endpoint, "POST", name, openapi.use_operation(service))


def _lookup_routes(app: Starlette) -> None:
    async def status_endpoint(request: Request) -> JsonResponse:
        gateway = gateway_of(request)
        data = await lookup_data(request)
        token = token_of(data, request)
        return JsonResponse(await lookup.status(gateway, data, token, client_of(request)))

    async def bulk_endpoint(request: Request) -> JsonResponse:
        gateway = gateway_of(request)
        data = await lookup_data(request)
        token = token_of(data, request)
        return JsonResponse(await lookup.bulk_status(gateway, data, token, client_of(request)))

    async def balance_endpoint(request: Request) -> JsonResponse:
        gateway = gateway_of(request)
        data = await lookup_data(request)
        token = token_of(data, request)
        return JsonResponse(await lookup.balance(gateway, token, client_of(request)))

    for path, endpoint, described in (
        ("/api/service/status/", status_endpoint, openapi.status_operation()),
        ("/api/service/bulk/status/", bulk_endpoint, openapi.bulk_status_operation()),
        ("/api/balance/", balance_endpoint, openapi.balance_operation()),
    ):
        serve(app, path, endpoint, "GET", path.strip("/").replace("/", "_"), described)


def _install_error_handlers(app: Starlette) -> None:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refusal)
        return api_error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        page = web.page_error(request, exc.status_code)
        if page is not None:
            return page
        if exc.status_code == 405:
            error = ApiError("1010", f"Method {request.method} not allowed here", http_status=405)
        elif exc.status_code == 404:
            error = ApiError("1008", "Unknown service or path", http_status=404)
        else:
            error = ApiError("1010", str(exc.detail), http_status=exc.status_code)
        return error_response(error)

    app.add_exception_handler(Refusal, on_api_error)
    app.add_exception_handler(HTTPException, on_http_error)


def _metrics_refusal(request: Request, settings: Settings) -> Response | None:
    """Without BHUKTANI_METRICS_TOKEN, /metrics is an unknown path (404); with it, the
    request must carry `Authorization: Bearer <token>` (401)."""
    expected = settings.metrics_token.get_secret_value().encode()
    if not expected:
        return api_error_response(ApiError("1008", "Unknown service or path", http_status=404))
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        error = ApiError("1001", "Send Authorization: Bearer <metrics token>", http_status=401)
    elif not hmac.compare_digest(given.strip().encode(), expected):
        error = ApiError("1002", "Wrong metrics token", http_status=401)
    else:
        return None
    refusal = api_error_response(error)
    refusal.headers["www-authenticate"] = 'Bearer realm="metrics"'
    return refusal


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    configure_logging(settings.log_level)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway = await runtime.start(settings)
        app.state.gateway = gateway
        # The last settlements on /metrics from the first scrape; books.settlement.watch
        # keeps them current.
        await settlement.publish(gateway.db)
        stop = asyncio.Event()
        workers = [
            asyncio.create_task(loop)
            for loop in runtime.loops(
                gateway,
                stop,
                reconciler=settings.reconciler_enabled,
                callbacks=settings.callbacks_enabled,
            )
        ]
        # /metrics: this worker's own state and the operator's queues, off the scrape's path.
        workers.append(
            asyncio.create_task(health.watch(gateway, stop, settings.queue_gauges_every_s))
        )
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*workers)
            await gateway.aclose()

    direct: dict[str, dict[str, Endpoint]] = {}
    app = Starlette(
        lifespan=lifespan,
        middleware=[Middleware(RequestContext, direct=direct, on_api_error=api_error_response)],
    )
    # A path is served as written or without its trailing slash (`_serve`), never redirected.
    app.router.redirect_slashes = False
    app.state.direct = direct
    app.state.documented = []
    _install_error_handlers(app)
    _document_routes(app)
    for group in registry.GROUPS:
        _group_route(app, "details", group, details_flow.details)
        _group_route(app, "commit", group, commit_flow.commit)
    for service in registry.SINGLE_STEP:
        _use_route(app, service)
    _lookup_routes(app)
    for install in (
        credit_requests.install,
        statements.install,
        charges.install,
        disputes.install,
    ):
        install(app)

    async def healthz(request: Request) -> JsonResponse:
        """200 while the database answers; a degraded ISP shows in `isps`, not in the
        status, because the gateway still serves every other ISP."""
        gateway = gateway_of(request)
        ok = await gateway.db.ping()
        isps = {f"live:{isp}": state for isp, state in gateway.breakers.snapshot().items()}
        body = {"status": "ok" if ok else "unavailable", "database": ok, "isps": isps}
        return JsonResponse(body, status_code=200 if ok else 503)

    async def metrics_endpoint(request: Request) -> Response:
        """For the operator's scraper alone: merchants share the port (docs/OPERATING.md,
        "Degraded ISPs and metrics")."""
        refusal = _metrics_refusal(request, settings)
        if refusal is not None:
            return refusal
        gateway = gateway_of(request)
        body = metrics.render(
            gateway.breakers.degraded(), gateway.db.waiting(), gateway.isp_waiting()
        )
        return Response(body, media_type=metrics.CONTENT_TYPE)

    web.install(app)
    app.router.routes.append(Route("/healthz", healthz, methods=["GET"]))
    # Described only: /healthz is served by the router, not called directly.
    app.state.documented.append(
        APIRoute("/healthz", healthz, methods=["GET"], openapi_extra=openapi.health_operation())
    )
    app.router.routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    return app


def serving_app() -> Starlette:
    """The app of `bhuktani serve`, built in each worker process. What start-up made (modules,
    routes, settings) lives as long as the process, so it is frozen out of every collection."""
    app = create_app()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)
    return app
