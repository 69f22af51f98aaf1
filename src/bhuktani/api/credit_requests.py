"""A merchant's credit request, `POST /api/public/creditrequest/` (balance_check.md,
"Credit Request API"): parsed and rendered here, decided in books.credit_requests."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request

from bhuktani.api import openapi, schemas
from bhuktani.api.routing import JsonResponse, body_data, client_of, gateway_of, serve, token_in
from bhuktani.books import credit_requests


async def credit_request_endpoint(request: Request) -> JsonResponse:
    data = await body_data(request)
    answer = await credit_requests.ask(
        gateway_of(request), data, token_in(data, request), client_of(request)
    )
    return JsonResponse(answer)


def _described() -> dict[str, Any]:
    return openapi.post(
        "requestCredit",
        "Ask the operator for credits",
        openapi.MONEY_TAG,
        body=schemas.ref(schemas.CreditRequest),
        example={"token": openapi.EXAMPLE_TOKEN, "credit": 5000.0},
        answered=openapi.answer(
            schemas.ref(schemas.CreditRequested),
            {"status": True, "detail": "Credit Requested", "request_id": 42},
        ),
        errors=openapi.refusals(
            (*openapi.TOKEN_CODES, "1014", "1015"),
            bare="for a credit that is not an amount above 0, or too many requests waiting",
        ),
    )


def install(app: Starlette) -> None:
    """Serve this module's calls on the app (api.routing.serve)."""
    serve(
        app,
        "/api/public/creditrequest/",
        credit_request_endpoint,
        "POST",
        "public_creditrequest",
        _described(),
    )
