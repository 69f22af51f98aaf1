"""The platform calls' requests and answers as the OpenAPI document names them
(docs/API.md sections 2, 5 and 5a). The calls build their answers as plain JSON values
(payments.lookup, books); these models describe them, field by field and JSON type by
JSON type, and tests/api/test_openapi.py holds each one true against the answers the
app gives."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

REF = "#/components/schemas/{model}"

# The body's `token` field of every request.
TOKEN_FIELD = {
    "type": "string",
    "maxLength": 200,
    "description": "The merchant's token (`TEST:...` for the sandbox). Or send it in the "
    "`Authorization: Token <token>` header; the body wins if both are given.",
}
Rupees = float
Moment = str


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorEnvelope(Answer):
    """Every refusal but the two calls' of BareRefusal (docs/API.md section 2)."""

    status: Literal[False]
    state: Literal["Error"]
    error_code: str = Field(description="The code of docs/API.md section 2, a string")
    error: str = Field(description="The code's name, e.g. `validation_error`")
    message: str = Field(description="The code's fixed text")
    details: str = Field(description="What exactly went wrong")
    error_data: dict[str, Any] = Field(
        description="Field name to a list of messages for 1010 and 1011; a duplicate's "
        "`id` and `state` for 1013; `{}` otherwise"
    )


class BareRefusal(Answer):
    """A refusal of credits by date and of a credit request, in their document's two
    fields (the code, 1010, is on the request's log line only)."""

    status: Literal[False]
    detail: str


class Refund(Answer):
    created_at: str = Field(description="The day in Nepal, YYYY-MM-DD")
    remarks: str
    amount: Rupees


PaymentState = Literal["Queued", "Processing", "Success", "Failed"]


class PaymentStatus(Answer):
    """A payment as the status look-up shows it."""

    status: Literal[True]
    state: PaymentState
    original_status: str = Field(
        description="What the ISP said: `Success`, `Error`, or the state while not final"
    )
    details: str
    reference: str
    response_id: int = Field(description="Our id of the payment: the commit's `id`")
    amount: Rupees
    refunded: bool
    refunded_amount: Rupees
    refunds: list[Refund]


class BulkEntry(Answer):
    status: Literal[True]
    state: Literal["Queued", "Processing", "Success", "Failed", "Error"]
    details: str
    reference: str
    response_id: int = Field(description="0 for an unknown reference")
    amount: Rupees


class BulkStatus(Answer):
    status: Literal[True]
    message: Literal["Success"]
    detail: list[BulkEntry] = Field(description="One entry per reference, in the order asked")


class Balance(Answer):
    credits_consumed: Rupees
    credits_available: Rupees


class CreditsByDateRequest(Answer):
    token: str | None = Field(default=None, description="The merchant's token")
    date: str = Field(description="A Nepal day, YYYY-MM-DD", examples=["2026-07-12"])


class CreditsByDate(Answer):
    credits_available: Rupees = Field(description="Available at the end of that Nepal day")
    status: Literal[True]


class StatementEntry(Answer):
    time: Moment = Field(description="ISO 8601 with +05:45, to the millisecond")
    kind: Literal["load", "payment", "failed", "refund", "charge_refund"]
    reference: str | None
    response_id: int | None
    amount: Rupees
    charge: Rupees
    balance: Rupees = Field(description="The available credits after the entry")
    note: str


class Statement(Answer):
    status: Literal[True]
    date: str
    opening: Rupees
    loads: Rupees
    payments: Rupees
    charges: Rupees
    refunds: Rupees
    closing: Rupees
    entries: list[StatementEntry] = Field(description="Oldest first")


class Transaction(PaymentStatus):
    """A payment of the transaction list: its status look-up and where it went."""

    service: str
    isp: str
    created_at: Moment
    charge: Rupees


class Transactions(Answer):
    status: Literal[True]
    results: list[Transaction] = Field(description="Newest first")
    next_cursor: str | None = Field(description="Pass back for the next page; null on the last")


class CreditRequest(Answer):
    token: str | None = Field(default=None, description="The merchant's token")
    credit: float | str = Field(description="Rupees, above 0, at most 2 decimal places")


class CreditRequested(Answer):
    status: Literal[True]
    detail: Literal["Credit Requested"]
    request_id: int


class ServiceCharge(Answer):
    amount: float = Field(description="The amount sent: an integer when whole")
    service_charge: Rupees


class ServiceChargeQuote(Answer):
    status: Literal[True]
    details: ServiceCharge


class DisputeRequest(Answer):
    token: str | None = Field(default=None, description="The merchant's token")
    reference: str = Field(description="The payment's reference, as sent on its commit")
    reason: str = Field(description="1 to 500 characters once trimmed")


class Dispute(Answer):
    id: int
    reference: str
    response_id: int
    amount: Rupees
    reason: str
    status: Literal["open", "refunded", "rejected"]
    created_at: Moment
    resolved_at: Moment | None
    note: str | None
    refund_amount: Rupees | None


class DisputeRaised(Answer):
    status: Literal[True]
    dispute: Dispute


class Disputes(Answer):
    status: Literal[True]
    results: list[Dispute] = Field(description="Newest first")
    next_cursor: str | None


class IspBreaker(Answer):
    state: str
    failures: int
    trips: int


class Health(Answer):
    status: Literal["ok", "unavailable"]
    database: bool
    isps: dict[str, IspBreaker] = Field(description="Each LIVE ISP's circuit breaker")


REQUESTS: tuple[type[Answer], ...] = (CreditsByDateRequest, CreditRequest, DisputeRequest)
ANSWERS: tuple[type[Answer], ...] = (
    ErrorEnvelope,
    BareRefusal,
    PaymentStatus,
    BulkStatus,
    Balance,
    CreditsByDate,
    Statement,
    Transactions,
    CreditRequested,
    ServiceChargeQuote,
    DisputeRaised,
    Disputes,
    Health,
)


def ref(model: type[BaseModel] | str) -> dict[str, str]:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": REF.format(model=name)}


def components() -> dict[str, Any]:
    """Every model above and the models they hold, by name."""
    modes: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((m, "validation") for m in REQUESTS),
        *((m, "serialization") for m in ANSWERS),
    ]
    _, top = models_json_schema(modes, ref_template=REF)
    found: dict[str, Any] = top["$defs"]
    for model in REQUESTS:
        found[model.__name__]["properties"]["token"] = TOKEN_FIELD
    return found
