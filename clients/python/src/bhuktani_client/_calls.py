"""Each call of the API as data: its method, path, fields, how often it may be sent, and
how its answer is read. Client and AsyncClient send the same Calls; only their I/O
differs."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import Any, Generic, TypeVar

import httpx

from bhuktani_client import models
from bhuktani_client.errors import ERROR_CLASSES, ApiError, RateLimited, UnreadableResponse

T = TypeVar("T")

# At most this many references per bulk look-up request (docs/API.md section 5).
BULK_MAX = 100


class Kind(Enum):
    """What may be sent again when an answer is lost."""

    # Reads change nothing: any lost answer is retried.
    READ = "read"
    # A payment is sent again with the same body, so the same reference: a gateway that
    # did take the first refuses the second (1013) and the client reads the payment back.
    PAYMENT = "payment"
    # Sent again only when it surely never arrived (the connection was refused): a second
    # credit request would wait for the operator beside the first.
    ONCE = "once"


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    kind: Kind
    read: Callable[[httpx.Response], T]
    body: dict[str, Any] | None = None
    params: dict[str, str] | None = None
    reference: str | None = None


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        # An amount is sent as a string: the gateway reads "1695.00" exactly.
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, default=_json_value, separators=(",", ":")).encode()


def _param(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def params_of(**fields: Any) -> dict[str, str]:
    return {name: _param(value) for name, value in fields.items() if value is not None}


def parse_json(response: httpx.Response) -> Any:
    """The answer's JSON, every non-integer number a Decimal."""
    return json.loads(response.content, parse_float=Decimal)


def retry_after_s(response: httpx.Response) -> float:
    given = response.headers.get("retry-after", "")
    return float(given) if given.isdigit() else 1.0


def refusal(response: httpx.Response, reference: str | None = None) -> Exception:
    """The error an answer other than 2xx stands for."""
    try:
        body = parse_json(response)
    except ValueError:
        return UnreadableResponse(response.status_code, response.text[:500], reference=reference)
    if not isinstance(body, dict):
        return UnreadableResponse(response.status_code, response.text[:500], reference=reference)
    code = body.get("error_code")
    if code is None and "detail" in body:
        # The two calls whose documents answer {"status": false, "detail": ...}: a 1010.
        kind: type[ApiError] = ERROR_CLASSES["1010"] if response.status_code == 400 else ApiError
        detail = str(body["detail"])
        return kind(response.status_code, None, "", detail, detail, {}, body=body)
    kind = ERROR_CLASSES.get(str(code), ApiError)
    error_data = body.get("error_data")
    arguments = (
        response.status_code,
        None if code is None else str(code),
        str(body.get("error", "")),
        str(body.get("message", "")),
        str(body.get("details", "")),
        error_data if isinstance(error_data, dict) else {},
    )
    if kind is RateLimited:
        return RateLimited(*arguments, body=body, retry_after_s=retry_after_s(response))
    return kind(*arguments, body=body)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """A 2xx answer's JSON object."""
    body = parse_json(response)
    if not isinstance(body, dict):
        raise UnreadableResponse(response.status_code, response.text[:500])
    return body


def is_lost(response: httpx.Response) -> bool:
    """An answer that is not the gateway's: a proxy's 502/503/504, or a 5xx without the
    JSON envelope. The request may or may not have been done."""
    if response.status_code in (502, 503, 504):
        return True
    if response.status_code < 500:
        return False
    try:
        body = parse_json(response)
    except ValueError:
        return True
    return not (isinstance(body, dict) and "error_code" in body)


# The calls.


def details(group: str, reference: str, fields: dict[str, Any]) -> Call[models.Details]:
    return Call(
        "POST",
        f"/api/servicegroup/details/{group}/",
        Kind.READ,
        lambda r: models.Details.parse(json_object(r), reference),
        body={**fields, "reference": reference},
    )


def commit(group: str, reference: str, fields: dict[str, Any]) -> Call[models.Payment]:
    return Call(
        "POST",
        f"/api/servicegroup/commit/{group}/",
        Kind.PAYMENT,
        lambda r: models.Payment.parse(json_object(r), reference),
        body={**fields, "reference": reference},
        reference=reference,
    )


def pay_single(slug: str, reference: str, fields: dict[str, Any]) -> Call[models.Payment]:
    return Call(
        "POST",
        f"/api/use/{slug}/",
        Kind.PAYMENT,
        lambda r: models.Payment.parse(json_object(r), reference),
        body={**fields, "reference": reference},
        reference=reference,
    )


def status(reference: str) -> Call[models.PaymentStatus]:
    return Call(
        "GET",
        "/api/service/status/",
        Kind.READ,
        lambda r: models.PaymentStatus.parse(json_object(r)),
        params={"reference": reference},
    )


def bulk_status(references: list[str]) -> Call[list[models.BulkEntry]]:
    if not 1 <= len(references) <= BULK_MAX:
        raise ValueError(f"a bulk look-up takes 1 to {BULK_MAX} references")
    return Call(
        "GET",
        "/api/service/bulk/status/",
        Kind.READ,
        lambda r: [models.BulkEntry.parse(e) for e in json_object(r)["detail"]],
        params={"references": ",".join(references), "reference_length": str(len(references))},
    )


def balance() -> Call[models.Balance]:
    return Call("GET", "/api/balance/", Kind.READ, lambda r: models.Balance.parse(json_object(r)))


def statement(day: date | str) -> Call[models.Statement]:
    return Call(
        "GET",
        "/api/statement/",
        Kind.READ,
        lambda r: models.Statement.parse(json_object(r)),
        params=params_of(date=day),
    )


def statement_csv(day: date | str) -> Call[str]:
    return Call(
        "GET",
        "/api/statement/",
        Kind.READ,
        lambda r: r.text,
        params=params_of(date=day, format="csv"),
    )


def credits_by_date(day: date | str) -> Call[Decimal]:
    return Call(
        "POST",
        "/api/credits/bydate/",
        Kind.READ,
        lambda r: models.rupees(json_object(r)["credits_available"]),
        body={"date": _param(day)},
    )


def transactions(
    *,
    from_date: date | str | None,
    to_date: date | str | None,
    state: str | None,
    service: str | None,
    reference: str | None,
    limit: int | None,
    cursor: str | None,
) -> Call[models.TransactionPage]:
    params = params_of(
        to=to_date, state=state, service=service, reference=reference, limit=limit, cursor=cursor
    )
    if from_date is not None:
        params["from"] = _param(from_date)
    return Call(
        "GET",
        "/api/transactions/",
        Kind.READ,
        lambda r: models.TransactionPage.parse(json_object(r)),
        params=params,
    )


def service_charge(service_slug: str, amount: Decimal | int | str) -> Call[models.ServiceCharge]:
    return Call(
        "GET",
        "/api/account/service-charges/",
        Kind.READ,
        lambda r: models.ServiceCharge.parse(json_object(r)),
        params=params_of(service_slug=service_slug, amount=amount),
    )


def credit_request(credit: Decimal | int | str) -> Call[models.CreditRequest]:
    return Call(
        "POST",
        "/api/public/creditrequest/",
        Kind.ONCE,
        lambda r: models.CreditRequest.parse(json_object(r)),
        body={"credit": credit},
    )


def raise_dispute(reference: str, reason: str) -> Call[models.Dispute]:
    return Call(
        "POST",
        "/api/disputes/",
        Kind.ONCE,
        lambda r: models.Dispute.parse(json_object(r)["dispute"]),
        body={"reference": reference, "reason": reason},
    )


def disputes(
    *, status: str | None, limit: int | None, cursor: str | None
) -> Call[models.DisputePage]:
    return Call(
        "GET",
        "/api/disputes/",
        Kind.READ,
        lambda r: models.DisputePage.parse(json_object(r)),
        params=params_of(status=status, limit=limit, cursor=cursor),
    )
