"""DishHome (khalti-docs/Internet/dishhome.md): a TV/ISP customer's recharges. A details
call names the customer by id, shows the account and its recharge options and opens a
session; the commit names one option by its `idx` (as `package_id`) and sends no amount:
the option sets the price (decision D2)."""

from __future__ import annotations

import re
from typing import Any

from bhuktani import money
from bhuktani.domain import State
from bhuktani.errors import ServiceUnavailable, field_error
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
    LooseId,
    LooseUsername,
    Reference,
    WireModel,
    parse,
    reference_present,
)

SLUG = "dishhome-updated"

# What the answers say in `response_code` and `response_description`: the document's
# words for a recharge made, and ours for one the ISP has not confirmed yet.
ANSWERED = 200
RECHARGED = "Successfully Recharged"
NOT_CONFIRMED = 202
BEING_PROCESSED = "Recharge is being processed"
# The document's customer_status after a recharge (decision D4).
ACTIVE = "Active"
# The commit sends no amount (decision D2): CommitQuery.amount_paisa is 0, which no sent
# amount can be (money.to_paisa reads only positive amounts).
NO_AMOUNT = 0

# Customer ids and idx are answered as JSON integers: at most 18 digits fit any client's
# int64, and a code is an idx only in its one decimal spelling ("9", not "09").
_NUMBER = re.compile(r"0|[1-9][0-9]{0,17}")
DAYS_PER_MONTH = 30


def _recharge(
    idx: int, description: str, rupees: int, months: int, bonus: float, regular: bool
) -> Duration:
    """One recharge option as the document lists it: a plan of `months` months, or a
    Regular top-up (months 0), which credits the account and adds no plan time."""
    return Duration.in_rupees(
        str(idx),
        description,
        rupees,
        months * DAYS_PER_MONTH,
        shown={"duration_type": months, "bonus": bonus, "is_regular": regular},
    )


# The document's options, in its order; the customer pays any of them again and again.
BASIC = Package(
    "Basic Package",
    1,
    (
        _recharge(1, "1 Month", 400, 1, 0.0, False),
        _recharge(2, "3 Months", 1200, 3, 400.0, False),
        _recharge(3, "6 Months", 2399, 6, 1201.0, False),
        _recharge(4, "12 Months", 4800, 12, 4800.0, False),
        _recharge(5, "Regular", 2000, 0, 400.0, True),
        _recharge(6, "Regular", 1000, 0, 100.0, True),
        _recharge(7, "Regular", 700, 0, 35.0, True),
        _recharge(8, "Regular", 600, 0, 30.0, True),
        _recharge(9, "Regular", 500, 0, 25.0, True),
    ),
)

# The account's fields as the details example shows them, in the ISP's own words.
ACCOUNT = {
    "quantity": 1,
    "expiry_date": "2037-11-28T11:15:00",
    "zone": "Mid-West | Bheri Zone",
    "district": "Surkhet",
    "customer_type": "House",
    "customer_status": "Prepaid On",
    "customer_class": "1-Residential",
    "isp_customer_id": "",
    "yearly_price": 4800.0,
}


def _customer(customer_id: str) -> Subscriber:
    """A test customer with the document's account and options, named by its id. DishHome
    shows no plan time in days: days_remaining is the sandbox's alone."""
    return Subscriber(
        username=customer_id,
        customer_id=customer_id,
        full_name=f"DishHome customer {customer_id}",
        current_plan=BASIC.title,
        days_remaining=365,
        has_due=False,
        accept_advance_payment=True,
        packages=(BASIC,),
        shown=dict(ACCOUNT),
    )


# The document's example customer, "1111" (decision D1); the scenario users are derived
# from it. The test data's TEST cas id is a customer of its own with the same account.
SANDBOX_USER = _customer("1111")
TEST_DATA_CUSTOMER = _customer("71909771942")


class DetailsRequest(WireModel):
    reference: Reference
    customer_id: LooseUsername


class CommitRequest(WireModel):
    reference: Reference
    session_id: LooseId
    package_id: LooseId
    # Not in the document; when sent, it must be the option's price (decision D2).
    amount: AmountPaisa | None = None


def _options(subscriber: Subscriber) -> dict[str, tuple[Package, Duration]]:
    """The recharge options of the customer's package, by idx, in the ISP's order: what a
    details call shows is exactly what a commit can pay. A code that is not an idx cannot
    be shown as the documented integer, so it is neither shown nor payable."""
    package = subscriber.current_package()
    options: dict[str, tuple[Package, Duration]] = {}
    if package is None:
        return options
    for duration in package.durations:
        if _NUMBER.fullmatch(duration.code):
            options.setdefault(duration.code, (package, duration))
    return options


# The ISP's own fields (Subscriber.shown, Duration.shown) in the documented JSON types: one
# it leaves out or sends as another type is shown empty, never breaking the answer's shape.


def _text(shown: dict[str, Any], name: str) -> str:
    value = shown.get(name)
    return value if isinstance(value, str) else ""


def _whole(shown: dict[str, Any], name: str) -> int:
    value = shown.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _number(shown: dict[str, Any], name: str) -> float:
    value = shown.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _flag(shown: dict[str, Any], name: str) -> bool:
    value = shown.get(name)
    return value if isinstance(value, bool) else False


def _customer_number(subscriber: Subscriber) -> int:
    if not _NUMBER.fullmatch(subscriber.customer_id):
        raise ServiceUnavailable("The ISP answered a customer id that is not a number")
    return int(subscriber.customer_id)


def _transaction_id(receipt: str) -> int:
    """The ISP's transaction id: its receipt, a number; 0 while there is none (Processing)
    or when the receipt is not one (the status look-up still tells it)."""
    return int(receipt) if _NUMBER.fullmatch(receipt) else 0


class DishhomeUpdated:
    slug = SLUG
    title = "DishHome"
    isps = (SLUG,)
    uses_sessions = True
    details_model: type[WireModel] = DetailsRequest
    commit_model: type[WireModel] = CommitRequest
    sandbox_subscribers = (SANDBOX_USER, TEST_DATA_CUSTOMER)
    examples = Examples(
        details={"customer_id": "1111"},
        commit={"session_id": "20520", "package_id": "9"},
    )

    def parse_details(self, data: dict[str, Any]) -> DetailsQuery:
        reference_present(data)
        request = parse(DetailsRequest, data)
        return DetailsQuery(isp=SLUG, username=request.customer_id, reference=request.reference)

    def render_details(self, subscriber: Subscriber, session_id: int | None) -> dict[str, Any]:
        assert session_id is not None
        account = subscriber.shown
        return {
            "response_code": ANSWERED,
            "package": subscriber.current_plan,
            "quantity": _whole(account, "quantity"),
            "expiry_date": _text(account, "expiry_date"),
            "zone": _text(account, "zone"),
            "district": _text(account, "district"),
            "customer_type": _text(account, "customer_type"),
            "customer_status": _text(account, "customer_status"),
            "customer_id": _customer_number(subscriber),
            "customer_class": _text(account, "customer_class"),
            "isp_customer_id": _text(account, "isp_customer_id"),
            "yearly_price": _number(account, "yearly_price"),
            "packages": [
                {
                    "description": option.title,
                    "price": money.to_rupees(option.amount_paisa),
                    "duration_type": _whole(option.shown, "duration_type"),
                    "bonus": _number(option.shown, "bonus"),
                    "is_regular": _flag(option.shown, "is_regular"),
                    "idx": int(idx),
                }
                for idx, (_, option) in _options(subscriber).items()
            ],
            "session_id": session_id,
            "status": True,
        }

    def parse_commit(self, data: dict[str, Any]) -> CommitQuery:
        reference_present(data)
        request = parse(CommitRequest, data)
        return CommitQuery(
            reference=request.reference,
            amount_paisa=NO_AMOUNT if request.amount is None else request.amount,
            duration_code=str(request.package_id),
            session_id=request.session_id,
        )

    def choose(self, subscriber: Subscriber, query: CommitQuery) -> tuple[Package, Duration]:
        """The option named by idx, at its price; an amount sent must be that price."""
        option = _options(subscriber).get(query.duration_code)
        if option is None:
            raise field_error(
                "package_id", f"No recharge option with idx {query.duration_code} for this customer"
            )
        if query.amount_paisa != NO_AMOUNT:
            require_amount(query.amount_paisa, option[1], "the option's price")
        return option

    def render_commit(self, view: CommitView) -> dict[str, Any]:
        """The recharge as the document shows it. The ISP protocol reports a receipt and
        nothing more: the account's balance and expiry after the recharge, and whether its
        bonus was added, are DishHome's to know, and are shown empty (0.0, "", false)
        rather than guessed."""
        recharged = view.state == State.SUCCESS
        amount = money.to_rupees_shown(view.amount_paisa)
        return {
            "status": True,
            "state": view.state,
            "message": message_for(view.state),
            "extra_data": {},
            "detail": {
                "response_code": ANSWERED if recharged else NOT_CONFIRMED,
                "response_description": RECHARGED if recharged else BEING_PROCESSED,
                "updated_balance": 0.0,
                "expiry_date": "",
                "customer_status": ACTIVE if recharged else "",
                "transaction_id": _transaction_id(view.receipt),
                "recharged_amount": amount,
                "is_bonus_added": False,
            },
            "credits_consumed": money.to_rupees_shown(view.consumed_paisa),
            "credits_available": money.to_rupees(view.available_paisa),
            "id": view.payment_id,
        }


GROUP = DishhomeUpdated()
