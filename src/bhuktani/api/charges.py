"""`GET /api/account/service-charges/`: the service charge a merchant would pay on an
amount, as khalti-docs/servicecharge/service-charge.md shows it. A look-up: its fields
come in the query string or a JSON body. The rules are in books.charges."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request

from bhuktani.api import openapi, schemas
from bhuktani.api.routing import JsonResponse, client_of, gateway_of, lookup_data, serve, token_in
from bhuktani.books import charges

PATH = "/api/account/service-charges/"


async def service_charges(request: Request) -> JsonResponse:
    gateway = gateway_of(request)
    data = await lookup_data(request)
    token = token_in(data, request)
    return JsonResponse(await charges.quote(gateway, data, token, client_of(request)))


def _described() -> dict[str, Any]:
    return openapi.get(
        "getServiceCharge",
        "The service charge on an amount",
        openapi.MONEY_TAG,
        parameters=[
            openapi.query(
                "service_slug",
                {"type": "string"},
                "A service's slug or an ISP's",
                required=True,
                example=openapi.EXAMPLE_SERVICE,
            ),
            openapi.query(
                "amount",
                {"anyOf": [{"type": "number"}, {"type": "string"}]},
                "Rupees, at most 2 decimal places",
                required=True,
                example=500,
            ),
        ],
        answered=openapi.answer(
            schemas.ref(schemas.ServiceChargeQuote),
            {"status": True, "details": {"amount": 500, "service_charge": 5.0}},
        ),
        errors=openapi.refusals(openapi.LOOKUP_CODES),
    )


def install(app: Starlette) -> None:
    """Serve this module's calls on the app (api.routing.serve)."""
    serve(app, PATH, service_charges, "GET", "account_service_charges", _described())
