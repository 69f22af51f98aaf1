"""What the calls answer: small typed views of the gateway's JSON. Each keeps the answer as
parsed in `raw`. Amounts are Decimal rupees: the JSON is parsed with every non-integer
number read as a Decimal, so no float ever carries money here."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

Json = dict[str, Any]


class State(StrEnum):
    """A payment's state (docs/API.md section 6); Error is a refusal's or an unknown
    reference's in a bulk look-up, never a payment's."""

    QUEUED = "Queued"
    PROCESSING = "Processing"
    SUCCESS = "Success"
    FAILED = "Failed"
    ERROR = "Error"

    @property
    def is_final(self) -> bool:
        return self in (State.SUCCESS, State.FAILED)


def rupees(value: Any) -> Decimal:
    """A JSON amount, parsed as Decimal or int, as Decimal rupees."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"not an amount: {value!r}")
    return Decimal(value)


def optional_rupees(value: Any) -> Decimal | None:
    return None if value is None else rupees(value)


def state_of(value: Any) -> State:
    return State(str(value))


@dataclass(frozen=True)
class Details:
    """A details call's answer: what the subscriber can pay. `session_id` is the one the
    commit names, for the groups that open sessions."""

    raw: Json
    session_id: int | None
    # The reference the details call was sent with (made up when none was given).
    reference: str

    @classmethod
    def parse(cls, raw: Json, reference: str) -> Details:
        session = raw.get("session_id")
        return cls(raw, session if isinstance(session, int) else None, reference)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]


@dataclass(frozen=True)
class Payment:
    """A commit's or a single-step payment's answer. `state` Queued or Processing is not
    final: `wait(reference)` or the callback tells the outcome.

    `recovered` is True when the answer to the first request was lost and the payment was
    read back by its reference (the retry was refused as a duplicate): `raw` is then the
    status look-up's answer and the credits fields are None."""

    id: int
    reference: str
    state: State
    detail: str
    credits_consumed: Decimal | None
    credits_available: Decimal | None
    raw: Json
    recovered: bool = False

    @classmethod
    def parse(cls, raw: Json, reference: str) -> Payment:
        return cls(
            id=int(raw["id"]),
            reference=reference,
            state=state_of(raw["state"]),
            detail=str(raw.get("detail", raw.get("message", ""))),
            credits_consumed=optional_rupees(raw.get("credits_consumed")),
            credits_available=optional_rupees(raw.get("credits_available")),
            raw=raw,
        )

    @classmethod
    def recovered_from(cls, status: PaymentStatus) -> Payment:
        return cls(
            id=status.response_id,
            reference=status.reference,
            state=status.state,
            detail=status.details,
            credits_consumed=None,
            credits_available=None,
            raw=status.raw,
            recovered=True,
        )


@dataclass(frozen=True)
class Refund:
    created_at: str
    remarks: str
    amount: Decimal


@dataclass(frozen=True)
class PaymentStatus:
    """The status look-up's answer (docs/API.md section 5)."""

    state: State
    original_status: str
    details: str
    reference: str
    response_id: int
    amount: Decimal
    refunded: bool
    refunded_amount: Decimal
    refunds: list[Refund]
    raw: Json

    @classmethod
    def parse(cls, raw: Json) -> PaymentStatus:
        return cls(
            state=state_of(raw["state"]),
            original_status=str(raw["original_status"]),
            details=str(raw["details"]),
            reference=str(raw["reference"]),
            response_id=int(raw["response_id"]),
            amount=rupees(raw["amount"]),
            refunded=bool(raw["refunded"]),
            refunded_amount=rupees(raw["refunded_amount"]),
            refunds=[
                Refund(str(r["created_at"]), str(r["remarks"]), rupees(r["amount"]))
                for r in raw["refunds"]
            ],
            raw=raw,
        )

    @property
    def is_final(self) -> bool:
        return self.state.is_final


@dataclass(frozen=True)
class BulkEntry:
    """One reference of a bulk look-up; `found` is False for a reference the gateway does
    not know (state Error, response_id 0)."""

    state: State
    details: str
    reference: str
    response_id: int
    amount: Decimal
    raw: Json

    @classmethod
    def parse(cls, raw: Json) -> BulkEntry:
        return cls(
            state_of(raw["state"]),
            str(raw["details"]),
            str(raw["reference"]),
            int(raw["response_id"]),
            rupees(raw["amount"]),
            raw,
        )

    @property
    def found(self) -> bool:
        return self.state is not State.ERROR


@dataclass(frozen=True)
class Balance:
    credits_available: Decimal
    credits_consumed: Decimal
    raw: Json

    @classmethod
    def parse(cls, raw: Json) -> Balance:
        return cls(rupees(raw["credits_available"]), rupees(raw["credits_consumed"]), raw)


@dataclass(frozen=True)
class StatementEntry:
    time: str
    kind: str
    reference: str | None
    response_id: int | None
    amount: Decimal
    charge: Decimal
    balance: Decimal
    note: str

    @classmethod
    def parse(cls, raw: Json) -> StatementEntry:
        return cls(
            time=str(raw["time"]),
            kind=str(raw["kind"]),
            reference=raw["reference"],
            response_id=raw["response_id"],
            amount=rupees(raw["amount"]),
            charge=rupees(raw["charge"]),
            balance=rupees(raw["balance"]),
            note=str(raw["note"]),
        )


@dataclass(frozen=True)
class Statement:
    """A Nepal day's statement (docs/API.md section 5a.3): opening + loads - payments -
    charges + refunds = closing."""

    date: str
    opening: Decimal
    loads: Decimal
    payments: Decimal
    charges: Decimal
    refunds: Decimal
    closing: Decimal
    entries: list[StatementEntry]
    raw: Json

    @classmethod
    def parse(cls, raw: Json) -> Statement:
        return cls(
            date=str(raw["date"]),
            opening=rupees(raw["opening"]),
            loads=rupees(raw["loads"]),
            payments=rupees(raw["payments"]),
            charges=rupees(raw["charges"]),
            refunds=rupees(raw["refunds"]),
            closing=rupees(raw["closing"]),
            entries=[StatementEntry.parse(e) for e in raw["entries"]],
            raw=raw,
        )


@dataclass(frozen=True)
class Transaction(PaymentStatus):
    """A payment of the transaction list: the status look-up's fields and its service,
    ISP, time and service charge."""

    service: str = ""
    isp: str = ""
    created_at: str = ""
    charge: Decimal = Decimal(0)

    @classmethod
    def parse(cls, raw: Json) -> Transaction:
        status = PaymentStatus.parse(raw)
        return cls(
            **{name: getattr(status, name) for name in PaymentStatus.__dataclass_fields__},
            service=str(raw["service"]),
            isp=str(raw["isp"]),
            created_at=str(raw["created_at"]),
            charge=rupees(raw["charge"]),
        )


@dataclass(frozen=True)
class TransactionPage:
    results: list[Transaction]
    next_cursor: str | None
    raw: Json

    @classmethod
    def parse(cls, raw: Json) -> TransactionPage:
        return cls([Transaction.parse(r) for r in raw["results"]], raw["next_cursor"], raw)


@dataclass(frozen=True)
class ServiceCharge:
    amount: Decimal
    service_charge: Decimal
    raw: Json

    @classmethod
    def parse(cls, raw: Json) -> ServiceCharge:
        details = raw["details"]
        return cls(rupees(details["amount"]), rupees(details["service_charge"]), raw)


@dataclass(frozen=True)
class CreditRequest:
    request_id: int
    detail: str
    raw: Json

    @classmethod
    def parse(cls, raw: Json) -> CreditRequest:
        return cls(int(raw["request_id"]), str(raw["detail"]), raw)


@dataclass(frozen=True)
class Dispute:
    id: int
    reference: str
    response_id: int
    amount: Decimal
    reason: str
    status: str
    created_at: str
    resolved_at: str | None
    note: str | None
    refund_amount: Decimal | None
    raw: Json

    @classmethod
    def parse(cls, raw: Json) -> Dispute:
        return cls(
            id=int(raw["id"]),
            reference=str(raw["reference"]),
            response_id=int(raw["response_id"]),
            amount=rupees(raw["amount"]),
            reason=str(raw["reason"]),
            status=str(raw["status"]),
            created_at=str(raw["created_at"]),
            resolved_at=raw["resolved_at"],
            note=raw["note"],
            refund_amount=optional_rupees(raw["refund_amount"]),
            raw=raw,
        )


@dataclass(frozen=True)
class DisputePage:
    results: list[Dispute]
    next_cursor: str | None
    raw: Json

    @classmethod
    def parse(cls, raw: Json) -> DisputePage:
        return cls([Dispute.parse(r) for r in raw["results"]], raw["next_cursor"], raw)


@dataclass(frozen=True)
class Callback:
    """A verified callback. `type` is "dlr" for a payment's delivery report (a form:
    `data` holds its fields as strings: reference, amount, status, detail, response_id,
    env) or the event's own type (`dispute.resolved`, `balance.low`: `data` is the event's
    `data`). `webhook_id` is the same on every attempt of one callback: drop duplicates
    by it."""

    webhook_id: str
    timestamp: int
    type: str
    data: dict[str, Any]
    body: bytes = field(repr=False)
