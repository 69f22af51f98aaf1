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


def install(app: Starlette) -> None:
    serve(app, "/api/credits/bydate/", credits_by_date, "POST", "credits_bydate")
    serve(app, "/api/statement/", statement, "GET", "statement")
    serve(app, "/api/transactions/", transaction_list, "GET", "transactions")
