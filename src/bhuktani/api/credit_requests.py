"""A merchant's credit request, `POST /api/public/creditrequest/` (balance_check.md,
"Credit Request API"): parsed and rendered here, decided in books.credit_requests."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request

from bhuktani.api.routing import JsonResponse, body_data, client_of, gateway_of, serve, token_in
from bhuktani.books import credit_requests

# The body as the OpenAPI document describes it: the document's two fields.
EXAMPLE = {"token": "TEST:your-test-token", "credit": 5000.0}
SCHEMA = {
    "type": "object",
    "properties": {
        "token": {"type": "string"},
        "credit": {
            "anyOf": [{"type": "number"}, {"type": "string"}],
            "description": "Rupees, at most 2 decimal places, above 0",
        },
    },
    "required": ["credit"],
}


async def credit_request_endpoint(request: Request) -> JsonResponse:
    data = await body_data(request)
    answer = await credit_requests.ask(
        gateway_of(request), data, token_in(data, request), client_of(request)
    )
    return JsonResponse(answer)


def install(app: Starlette) -> None:
    """Serve this module's calls on the app (api.routing.serve)."""
    serve(
        app,
        "/api/public/creditrequest/",
        credit_request_endpoint,
        "POST",
        "public_creditrequest",
        {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": SCHEMA, "example": EXAMPLE}},
            }
        },
    )
