"""`GET /api/account/service-charges/`: the service charge a merchant would pay on an
amount, as khalti-docs/servicecharge/service-charge.md shows it. A look-up: its fields
come in the query string or a JSON body. The rules are in books.charges."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request

from bhuktani.api.routing import JsonResponse, client_of, gateway_of, lookup_data, serve, token_in
from bhuktani.books import charges

PATH = "/api/account/service-charges/"


async def service_charges(request: Request) -> JsonResponse:
    gateway = gateway_of(request)
    data = await lookup_data(request)
    token = token_in(data, request)
    return JsonResponse(await charges.quote(gateway, data, token, client_of(request)))


def install(app: Starlette) -> None:
    """Serve this module's calls on the app (api.routing.serve)."""
    serve(app, PATH, service_charges, "GET", "account_service_charges")
