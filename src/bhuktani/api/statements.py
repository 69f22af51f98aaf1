"""The merchant's books by day and by payment: credits by date (Khalti's
`Servicescodes/balance_check.md`, in its shapes), the daily statement, and the
transaction list."""

from __future__ import annotations

from datetime import date
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from bhuktani import logs, money
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
from bhuktani.books import statements, transactions
from bhuktani.errors import BareRefusal, field_error
from bhuktani.payments import policy

BAD_DATE = "Invalid date: send the date as YYYY-MM-DD"
FUTURE_DATE = "Invalid date: the date is in the future"
FORMATS = ("json", "csv")


def _bare_day(data: dict[str, Any]) -> date:
    day = statements.parse_day(data.get("date"))
    if day is None:
        raise BareRefusal(BAD_DATE)
    if day > statements.today():
        raise BareRefusal(FUTURE_DATE)
    return day


def _statement_day(data: dict[str, Any]) -> date:
    day = statements.parse_day(data.get("date"))
    if day is None:
        raise field_error("date", BAD_DATE)
    if day > statements.today():
        raise field_error("date", FUTURE_DATE)
    return day


async def credits_by_date(request: Request) -> JsonResponse:
    gateway = gateway_of(request)
    data = await body_data(request)
    principal = await policy.caller(gateway, token_in(data, request), client_of(request))
    logs.bind(merchant_id=principal.merchant_id, env=principal.env)
    day = _bare_day(data)
    available_paisa = await statements.credits_on(
        gateway.db, principal.merchant_id, principal.env, day
    )
    return JsonResponse({"credits_available": money.to_rupees(available_paisa), "status": True})


async def statement(request: Request) -> Response:
    gateway = gateway_of(request)
    data = await lookup_data(request)
    principal = await policy.caller(gateway, token_in(data, request), client_of(request))
    logs.bind(merchant_id=principal.merchant_id, env=principal.env)
    day = _statement_day(data)
    shape = data.get("format") or "json"
    if shape not in FORMATS:
        raise field_error("format", "format is json or csv")
    found = await statements.statement(gateway.db, principal.merchant_id, principal.env, day)
    if shape == "json":
        return JsonResponse(statements.as_json(found))
    return Response(
        statements.as_csv(found),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="statement-{day.isoformat()}.csv"'},
    )


async def transaction_list(request: Request) -> JsonResponse:
    gateway = gateway_of(request)
    data = await lookup_data(request)
    found = await transactions.transactions(
        gateway, data, token_in(data, request), client_of(request)
    )
    return JsonResponse(found)


DAY = {"type": "string", "format": "date"}
STATEMENT_EXAMPLE = {
    "status": True,
    "date": "2026-07-12",
    "opening": 1000.0,
    "loads": 500.0,
    "payments": 100.0,
    "charges": 5.0,
    "refunds": 0.0,
    "closing": 1395.0,
    "entries": [
        {
            "time": "2026-07-12T00:00:00.000+05:45",
            "kind": "load",
            "reference": None,
            "response_id": None,
            "amount": 500.0,
            "charge": 0.0,
            "balance": 1500.0,
            "note": "credit load",
        },
        {
            "time": "2026-07-12T10:00:00.000+05:45",
            "kind": "payment",
            "reference": "inv-1001",
            "response_id": 7312338848142,
            "amount": 100.0,
            "charge": 5.0,
            "balance": 1395.0,
            "note": "",
        },
    ],
}
TRANSACTION_EXAMPLE = {
    **openapi.STATUS_EXAMPLE,
    "service": openapi.EXAMPLE_SERVICE,
    "isp": openapi.EXAMPLE_SERVICE,
    "created_at": "2026-07-12T12:00:00.000+05:45",
    "charge": 5.0,
}


def _credits_by_date_described() -> dict[str, Any]:
    return openapi.post(
        "getCreditsByDate",
        "Credits available at the end of a day",
        openapi.MONEY_TAG,
        body=schemas.ref(schemas.CreditsByDateRequest),
        example={"token": openapi.EXAMPLE_TOKEN, "date": "2026-07-12"},
        answered=openapi.answer(
            schemas.ref(schemas.CreditsByDate), {"credits_available": 1478.0, "status": True}
        ),
        errors=openapi.refusals(
            (*openapi.TOKEN_CODES, "1014", "1015"), bare="for a date missing, malformed or future"
        ),
    )


def _statement_described() -> dict[str, Any]:
    csv = {
        "schema": {"type": "string"},
        "example": "time,kind,reference,response_id,amount,charge,balance,note\r\n",
    }
    described = openapi.get(
        "getStatement",
        "A day's statement (JSON or CSV)",
        openapi.MONEY_TAG,
        parameters=[
            openapi.query(
                "date", DAY, "A Nepal day, YYYY-MM-DD", required=True, example="2026-07-12"
            ),
            openapi.query(
                "format",
                {"type": "string", "enum": list(FORMATS), "default": "json"},
                "The answer's format",
            ),
        ],
        answered=openapi.answer(schemas.ref(schemas.Statement), STATEMENT_EXAMPLE),
        errors=openapi.refusals(openapi.LOOKUP_CODES),
        description="`format=csv` answers `text/csv` (one row per entry) as an attachment.",
    )
    described["responses"]["200"]["content"]["text/csv"] = csv
    return described


def _transactions_described() -> dict[str, Any]:
    text = {"type": "string"}
    return openapi.get(
        "listTransactions",
        "The merchant's payments, newest first, a page at a time",
        openapi.MONEY_TAG,
        parameters=[
            openapi.query("from", DAY, "The first Nepal day, inclusive"),
            openapi.query("to", DAY, "The last Nepal day, inclusive"),
            openapi.query(
                "state",
                {"type": "string", "enum": ["Success", "Failed", "Processing", "Queued"]},
                "Only payments in this state",
            ),
            openapi.query("service", text, "A service's slug or an ISP's"),
            openapi.query(
                "reference",
                {"type": "string", "minLength": 1, "maxLength": 50},
                "The start of a reference",
            ),
            openapi.query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
                "Results per page",
            ),
            openapi.query("cursor", text, "The `next_cursor` of the page before"),
        ],
        answered=openapi.answer(
            schemas.ref(schemas.Transactions),
            {"status": True, "results": [TRANSACTION_EXAMPLE], "next_cursor": None},
        ),
        errors=openapi.refusals(openapi.LOOKUP_CODES),
    )


def install(app: Starlette) -> None:
    serve(
        app,
        "/api/credits/bydate/",
        credits_by_date,
        "POST",
        "credits_bydate",
        _credits_by_date_described(),
    )
    serve(app, "/api/statement/", statement, "GET", "statement", _statement_described())
    serve(
        app,
        "/api/transactions/",
        transaction_list,
        "GET",
        "transactions",
        _transactions_described(),
    )
