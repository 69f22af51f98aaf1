"""Vianet (khalti-docs/Internet/vianet-new.md): a customer's pending bills. A details call
names the customer by id, lists the bills not yet paid and opens a session; the commit pays
one bill, named by its payment_id, at its grand_total. A paid bill leaves the next details;
a customer with none left has nothing to pay (7000)."""

from __future__ import annotations

import re
from typing import Any

from bhuktani import money
from bhuktani.domain import State
from bhuktani.errors import CannotFulfil, NothingToPay, ServiceUnavailable, field_error
from bhuktani.isps.base import Duration, Package, Subscriber
from bhuktani.services.base import (
    CommitQuery,
    CommitView,
    DetailsQuery,
    Examples,
    message_for,
    require_amount,
)
from bhuktani.services.fields import (
    AmountPaisa,
    LooseCode,
    LooseId,
    LooseUsername,
    Reference,
    WireModel,
    parse,
    reference_present,
)

SLUG = "vianet-updated"

# The document's words: for a customer without pending bills (7000), for a bill paid before
# (4000), and in a paid commit's `detail`.
NO_PENDING_BILLS = "You have no pending bills right now !!"
ALREADY_PAID = "Payment seems to have already been Made!"
PAID_MESSAGE = "Payment Successfull! Thank you for using Online Payment Option"
PENDING_MESSAGE = "Payment is being processed"

# The account the example's bills are for (the document repeats it on each bill).
SERVICE_NAME = "wetherspooncafe21424"
# Customer ids are answered as JSON integers: up to 15 digits, every JSON client (doubles
# included) reads them exactly.
_CUSTOMER_NUMBER = re.compile(r"[0-9]{1,15}")


def _bill(
    payment_id: str,
    service_details: str,
    vat_amount: str,
    grand_total: str,
    service_rate: str,
) -> Duration:
    """A bill as the document writes it: paid once, for its grand_total, adding no days;
    its fields that the generic model has no place for in `shown`."""
    return Duration(
        code=payment_id,
        title=service_details,
        amount_paisa=money.to_paisa(grand_total),
        days=0,
        once=True,
        shown={
            "service_name": SERVICE_NAME,
            "vat_amount": vat_amount,
            "service_rate": service_rate,
        },
    )


# The bills stand in one package: the commit names a bill alone, never a plan.
BILLS = Package(
    "Pending bills",
    1,
    (
        _bill("1613142_PP", "FiberNet Home CRush (1 year)", "30.55", "277.98", "246.00"),
        _bill("1613143_PP", "Test payment 2", "3.77", "34.35", "30.40"),
        _bill("1613144_PP", "Test Payment 1", "5.20", "47.46", "42.00"),
        _bill("1613145_PP", "FiberNet Home CRush (6 months)", "13.00", "118.65", "105.00"),
    ),
)

# The test data's customer "9099", with the document's example bills and name (decision
# V1); the scenario users are derived from it.
SANDBOX_USER = Subscriber(
    username="9099",
    customer_id="9099",
    full_name="Suman  Shrestha",
    current_plan=BILLS.title,
    days_remaining=0,
    has_due=True,
    accept_advance_payment=False,
    packages=(BILLS,),
)
# The document's example request names customer 110871: a customer of its own, with the
# same bills, so that the example answers as the document shows it.
EXAMPLE_CUSTOMER = Subscriber(
    username="110871",
    customer_id="110871",
    full_name="Suman  Shrestha",
    current_plan=BILLS.title,
    days_remaining=0,
    has_due=True,
    accept_advance_payment=False,
    packages=(BILLS,),
)


class DetailsRequest(WireModel):
    reference: Reference
    customer_id: LooseUsername


class CommitRequest(WireModel):
    reference: Reference
    session_id: LooseId
    payment_id: LooseCode
    amount: AmountPaisa


def _pending(subscriber: Subscriber) -> dict[str, tuple[Package, Duration]]:
    """The bills the customer can pay now, by payment_id, in the ISP's order. Only one-time
    offers are bills: anything else an ISP sends is neither shown nor payable here."""
    return {
        duration.code: (package, duration)
        for package, duration in subscriber.offers()
        if duration.once
    }


def _customer_number(subscriber: Subscriber) -> int:
    if not _CUSTOMER_NUMBER.fullmatch(subscriber.customer_id):
        raise ServiceUnavailable("The ISP answered a customer id that is not a number")
    return int(subscriber.customer_id)


def _text(bill: Duration, name: str) -> str:
    """One of a bill's own fields; an ISP that leaves it out or sends it as anything but
    text shows it empty rather than making the bill unpayable."""
    value = bill.shown.get(name)
    return value if isinstance(value, str) else ""


class VianetUpdated:
    slug = SLUG
    title = "Vianet"
    isps = (SLUG,)
    uses_sessions = True
    details_model: type[WireModel] = DetailsRequest
    commit_model: type[WireModel] = CommitRequest
    sandbox_subscribers = (SANDBOX_USER, EXAMPLE_CUSTOMER)
    examples = Examples(
        details={"customer_id": 110871},
        commit={"session_id": "27383", "payment_id": "1613142_PP", "amount": 277.98},
    )

    def parse_details(self, data: dict[str, Any]) -> DetailsQuery:
        reference_present(data)
        request = parse(DetailsRequest, data)
        return DetailsQuery(isp=SLUG, username=request.customer_id, reference=request.reference)

    def render_details(self, subscriber: Subscriber, session_id: int | None) -> dict[str, Any]:
        assert session_id is not None
        bills = [bill for _, bill in _pending(subscriber).values()]
        if not bills:
            raise NothingToPay(NO_PENDING_BILLS)
        return {
            "customer_id": _customer_number(subscriber),
            "customer_name": subscriber.full_name,
            "bills": [
                {
                    "payment_id": bill.code,
                    "service_name": _text(bill, "service_name"),
                    "service_details": bill.title,
                    "vat_amount": _text(bill, "vat_amount"),
                    "grand_total": money.format_rupees(bill.amount_paisa),
                    "service_rate": _text(bill, "service_rate"),
                }
                for bill in bills
            ],
            "session_id": session_id,
            "status": True,
        }

    def parse_commit(self, data: dict[str, Any]) -> CommitQuery:
        reference_present(data)
        request = parse(CommitRequest, data)
        return CommitQuery(
            reference=request.reference,
            amount_paisa=request.amount,
            duration_code=request.payment_id,
            session_id=request.session_id,
        )

    def choose(self, subscriber: Subscriber, query: CommitQuery) -> tuple[Package, Duration]:
        """The bill named by payment_id, at its grand_total (decision V3)."""
        bill = _pending(subscriber).get(query.duration_code)
        if bill is None:
            if query.duration_code in subscriber.paid:
                raise CannotFulfil(ALREADY_PAID)
            raise field_error(
                "payment_id", f"No pending bill {query.duration_code!r} for this customer"
            )
        require_amount(query.amount_paisa, bill[1], "the bill's grand_total")
        return bill

    def render_commit(self, view: CommitView) -> dict[str, Any]:
        paid = view.state == State.SUCCESS
        return {
            "status": True,
            "state": view.state,
            "message": message_for(view.state),
            "extra_data": {},
            "detail": {"message": PAID_MESSAGE if paid else PENDING_MESSAGE},
            "credits_consumed": money.to_rupees(view.consumed_paisa),
            "credits_available": money.to_rupees(view.available_paisa),
            "id": view.payment_id,
        }


GROUP = VianetUpdated()
