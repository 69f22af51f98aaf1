"""`POST /api/disputes/` raises a dispute of a payment; `GET /api/disputes/` lists the
merchant's (books.disputes decides both)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request

from bhuktani.api.routing import (
    JsonResponse,
    body_data,
    client_of,
    gateway_of,
    lookup_data,
    serve,
    token_in,
)
from bhuktani.books import disputes

PATH = "/api/disputes/"


async def raise_endpoint(request: Request) -> JsonResponse:
    data = await body_data(request)
    answer = await disputes.raise_dispute(
        gateway_of(request), data, token_in(data, request), client_of(request)
    )
    return JsonResponse(answer)


async def list_endpoint(request: Request) -> JsonResponse:
    data = await lookup_data(request)
    answer = await disputes.merchant_listing(
        gateway_of(request), data, token_in(data, request), client_of(request)
    )
    return JsonResponse(answer)


def install(app: Starlette) -> None:
    """Serve this module's calls on the app (api.routing.serve)."""
    serve(app, PATH, raise_endpoint, "POST", "disputes_raise")
    serve(app, PATH, list_endpoint, "GET", "disputes_list")
