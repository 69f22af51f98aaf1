"""Look-ups of section 5: a payment's status, many at once, and the balance, in the
shapes of the platform's own documents (khalti-docs/Servicescodes/lookup.md and
bulkservice.md): the same fields, the same JSON types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bhuktani import logs, money
from bhuktani.clock import nepal_day
from bhuktani.domain import FINAL_STATES, State
from bhuktani.errors import ReferenceMissing, Refusal, UnknownReference, field_error
from bhuktani.ledger import accounts as ledger
from bhuktani.merchants.service import Principal
from bhuktani.payments import policy, records
from bhuktani.runtime import Gateway
from bhuktani.services import registry
from bhuktani.services.fields import loose_int
from bhuktani.store import Row, Tx

MAX_BULK_REFERENCES = 100
MAX_REFERENCE_CHARS = 50
# A bulk entry for a reference that names no payment, as bulkservice.md shows it.
UNKNOWN_IN_BULK = "Invalid reference obtained for account"
# The ISP's final word (payments.isp_status, as records.final_of writes it) in the words
# the platform's look-ups use for original_status (lookup.md: "Success", "Error").
_ISP_WORDS = {"Paid": "Success", "Refused": "Error", "NotFound": "Error"}


async def _refunds(tx: Tx, payment_id: int) -> Sequence[Row]:
    # The refunds of the amount only: a service charge's moves name the payment too.
    return await tx.fetch(
        f"SELECT t.amount_paisa, t.note, t.created_ms {ledger.REFUNDS_OF_PAYMENT} ORDER BY t.id",
        payment_id,
    )


def original_status(state: str, isp_status: str) -> str:
    """What the ISP said of a payment, in the platform's words (docs/API.md section 5).
    Until the payment is final the ISP has said nothing final, whatever isp_status holds
    ("Sent": asked, no answer yet; "Unknown": an answer we could not read; "NotFound": not
    there yet), so the word is the payment's own state, Queued or Processing."""
    if state not in FINAL_STATES:
        return str(state)
    # A final payment without such a word (an operator decided it: "Operator") by its state.
    return _ISP_WORDS.get(isp_status) or ("Success" if state == State.SUCCESS else "Error")


def refund_date(created_ms: int) -> str:
    """A refund's created_at as lookup.md shows it: a date, "2024-07-15", in Nepal."""
    return nepal_day(created_ms).isoformat()


def _state(row: Row) -> str:
    # As the commit answered it: a single-step payment not final yet is Queued.
    return registry.state_shown(str(row["service"]), str(row["state"]))


def _render(row: Row, refunds: Sequence[Row]) -> dict[str, Any]:
    refunded_paisa = sum(int(r["amount_paisa"]) for r in refunds)
    state = _state(row)
    return {
        "status": True,
        "state": state,
        "original_status": original_status(state, str(row["isp_status"])),
        "details": records.describe(row),
        "reference": row["reference"],
        "response_id": int(row["id"]),
        "amount": money.to_rupees(int(row["amount_paisa"])),
        "refunded": refunded_paisa > 0,
        "refunded_amount": money.to_rupees(refunded_paisa),
        "refunds": [
            {
                "created_at": refund_date(int(r["created_ms"])),
                "remarks": r["note"] or "",
                "amount": money.to_rupees(int(r["amount_paisa"])),
            }
            for r in refunds
        ],
    }


def _bulk_entry(reference: str, row: Row | None) -> dict[str, Any]:
    """One entry of a bulk look-up: bulkservice.md's six fields, for an unknown reference
    too (state "Error", response_id 0 and amount 0, JSON integers, as documented)."""
    if row is None:
        return {
            "status": True,
            "state": "Error",
            "details": UNKNOWN_IN_BULK,
            "reference": reference,
            "response_id": 0,
            "amount": 0,
        }
    return {
        "status": True,
        "state": _state(row),
        "details": records.describe(row),
        "reference": str(row["reference"]),
        "response_id": int(row["id"]),
        "amount": money.to_rupees(int(row["amount_paisa"])),
    }


async def _payments(tx: Tx, principal: Principal, references: Sequence[str]) -> dict[str, Row]:
    found: dict[str, Row] = {}
    for reference in references:
        row = await tx.fetchrow(
            "SELECT id, reference, service, state, isp_status, detail, amount_paisa FROM payments"
            " WHERE merchant_id = $1 AND env = $2 AND reference = $3",
            principal.merchant_id,
            principal.env,
            reference,
        )
        if row is not None:
            found[reference] = row
    return found


def _invalid_reference() -> Refusal:
    return UnknownReference("No payment with this reference for this token")


async def status(
    gateway: Gateway, data: dict[str, Any], token: str | None, client: str
) -> dict[str, Any]:
    principal = await policy.caller(gateway, token, client)
    logs.bind(merchant_id=principal.merchant_id, env=principal.env)
    reference = data.get("reference")
    if reference in (None, ""):
        raise ReferenceMissing("Send the 'reference' to look up")
    if not isinstance(reference, str) or len(reference) > MAX_REFERENCE_CHARS:
        raise _invalid_reference()
    logs.bind(reference=reference)

    async def _tx(tx: Tx) -> dict[str, Any]:
        row = (await _payments(tx, principal, [reference])).get(reference)
        if row is None:
            raise _invalid_reference()
        return _render(row, await _refunds(tx, int(row["id"])))

    return await gateway.db.read(_tx)


def _parse_references(data: dict[str, Any]) -> list[str]:
    raw = data.get("references")
    if raw in (None, ""):
        raise ReferenceMissing("Send 'references', comma separated")
    if not isinstance(raw, str):
        raise field_error("references", "References must be a comma separated string")
    references = [r.strip() for r in raw.split(",")]
    if len(references) > MAX_BULK_REFERENCES:
        raise field_error("references", f"At most {MAX_BULK_REFERENCES} references at once")
    if any(not r or len(r) > MAX_REFERENCE_CHARS for r in references):
        raise field_error("references", "Each reference is 1 to 50 characters")
    # ASCII digits only: int() would read "１", "٢" and "1_0".
    count = loose_int(data.get("reference_length"))
    if not isinstance(count, int) or isinstance(count, bool):
        raise field_error("reference_length", "reference_length must be a number")
    if count != len(references):
        raise field_error(
            "reference_length",
            f"reference_length {count} but {len(references)} references sent",
        )
    return references


async def bulk_status(
    gateway: Gateway, data: dict[str, Any], token: str | None, client: str
) -> dict[str, Any]:
    principal = await policy.caller(gateway, token, client)
    logs.bind(merchant_id=principal.merchant_id, env=principal.env)
    references = _parse_references(data)

    async def _tx(tx: Tx) -> dict[str, Row]:
        return await _payments(tx, principal, references)

    found = await gateway.db.read(_tx)
    detail = [_bulk_entry(reference, found.get(reference)) for reference in references]
    return {"status": True, "message": "Success", "detail": detail}


async def balance(gateway: Gateway, token: str | None, client: str) -> dict[str, Any]:
    principal = await policy.caller(gateway, token, client)
    logs.bind(merchant_id=principal.merchant_id, env=principal.env)

    async def _tx(tx: Tx) -> ledger.Balance:
        account = await ledger.merchant_account(tx, principal.merchant_id, principal.env)
        return await ledger.balance(tx, account)

    current = await gateway.db.run(_tx)
    return {
        "credits_consumed": money.to_rupees(current.consumed_paisa),
        "credits_available": money.to_rupees(current.available_paisa),
    }
