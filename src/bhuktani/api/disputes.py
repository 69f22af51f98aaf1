"""`POST /api/disputes/` raises a dispute of a payment; `GET /api/disputes/` lists the
merchant's (books.disputes decides both)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request

from bhuktani.api import openapi, schemas
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


EXAMPLE = {
    "id": 17,
    "reference": "order-1001",
    "response_id": 81234567,
    "amount": 1695.0,
    "reason": "Not applied by the ISP",
    "status": "open",
    "created_at": "2026-07-12T10:02:11+05:45",
    "resolved_at": None,
    "note": None,
    "refund_amount": None,
}


def _raise_described() -> dict[str, Any]:
    return openapi.post(
        "raiseDispute",
        "Dispute a final payment",
        openapi.MONEY_TAG,
        body=schemas.ref(schemas.DisputeRequest),
        example={
            "token": openapi.EXAMPLE_TOKEN,
            "reference": openapi.EXAMPLE_REFERENCE,
            "reason": "Not applied by the ISP",
        },
        answered=openapi.answer(
            schemas.ref(schemas.DisputeRaised), {"status": True, "dispute": EXAMPLE}
        ),
        errors=openapi.refusals((*openapi.TOKEN_CODES, *openapi.BODY_CODES, "1012", "002", "4000")),
        description="`4000` while the payment is not final, or one of its disputes is open.",
    )


def _list_described() -> dict[str, Any]:
    return openapi.get(
        "listDisputes",
        "The merchant's disputes, newest first",
        openapi.MONEY_TAG,
        parameters=[
            openapi.query(
                "status",
                {"type": "string", "enum": ["open", "refunded", "rejected"]},
                "Only disputes in this status",
            ),
            openapi.query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
                "Results per page",
            ),
            openapi.query("cursor", {"type": "string"}, "The `next_cursor` of the page before"),
        ],
        answered=openapi.answer(
            schemas.ref(schemas.Disputes),
            {"status": True, "results": [EXAMPLE], "next_cursor": None},
        ),
        errors=openapi.refusals(openapi.LOOKUP_CODES),
    )


def install(app: Starlette) -> None:
    """Serve this module's calls on the app (api.routing.serve)."""
    serve(app, PATH, raise_endpoint, "POST", "disputes_raise", _raise_described())
    serve(app, PATH, list_endpoint, "GET", "disputes_list", _list_described())
