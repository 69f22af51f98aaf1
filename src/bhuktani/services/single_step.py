"""Single-step services: one call, `POST /api/use/<slug>/`, pays an amount the merchant
chooses into a subscriber's account at an ISP that is often offline (khalti-docs/Internet/,
the documents marked "Single Step API"). There is no details call and no session.

The call holds the credits and answers Queued at once. The reconciler hands the payment to
the ISP on its first round and settles it as it settles a Processing payment; the merchant
learns the outcome from the status look-up and the callback. Each service is a module of
its own beside this one, which holds what they share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from bhuktani import money
from bhuktani.errors import field_error
from bhuktani.isps.base import Duration, Package, Subscriber
from bhuktani.services.base import CommitView
from bhuktani.services.fields import (
    AmountPaisa,
    Reference,
    Username,
    WireModel,
    parse,
    reference_present,
)

# The test user every single-step document names.
SANDBOX_USERNAME = "khaltiUser"
# What the payment is at the ISP: a deposit of the amount into the subscriber's account.
DEPOSIT_TITLE = "Deposit"
DEPOSIT_CODE = "deposit"
# Every single-step document: "Minimum Amount 100".
MIN_RUPEES = 100
QUEUED_MESSAGE = "Your operation is in queue."


def _digits_as_text(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


# The documents send a phone number as a string; a number is read as its digits.
PhoneNumber = Annotated[
    str,
    BeforeValidator(_digits_as_text, json_schema_input_type=str | int),
    Field(min_length=1, max_length=20),
]
Address = Annotated[str, Field(min_length=1, max_length=200)]


class UseRequest(WireModel):
    reference: Reference
    username: Username
    amount: AmountPaisa


class MobileUse(UseRequest):
    """The request of the documents that ask for `mobile_number`."""

    mobile_number: PhoneNumber


class AddressUse(UseRequest):
    """The request of the documents that ask for `number` and `address`."""

    number: PhoneNumber
    address: Address


@dataclass(frozen=True)
class UseQuery:
    reference: str
    isp: str
    username: str
    amount_paisa: int


class SingleStepService:
    """One single-step service, from the facts its document states."""

    uses_sessions = False

    def __init__(
        self,
        *,
        slug: str,
        title: str,
        use_model: type[UseRequest],
        example: dict[str, Any],
        max_rupees: int | None = None,
        username_pattern: str | None = None,
    ) -> None:
        self.slug = slug
        self.title = title
        self.isps: tuple[str, ...] = (slug,)
        self.use_model = use_model
        self.example = example
        # The documented maximum; where a document states none, the gateway's own cap.
        self.max_paisa = money.MAX_AMOUNT_PAISA if max_rupees is None else max_rupees * 100
        self._username = None if username_pattern is None else re.compile(username_pattern)
        deposit = Duration(
            DEPOSIT_CODE,
            DEPOSIT_TITLE,
            MIN_RUPEES * 100,
            0,
            max_amount_paisa=self.max_paisa,
        )
        self.sandbox_subscribers: tuple[Subscriber, ...] = (
            Subscriber(
                username=SANDBOX_USERNAME,
                customer_id="1",
                full_name=SANDBOX_USERNAME,
                current_plan=DEPOSIT_TITLE,
                days_remaining=0,
                has_due=False,
                accept_advance_payment=True,
                packages=(Package(DEPOSIT_TITLE, 0, (deposit,)),),
            ),
        )

    def parse_use(self, data: dict[str, Any]) -> UseQuery:
        reference_present(data)
        request = parse(self.use_model, data)
        # The documents' pattern as they write it, unanchored: a username with nothing it
        # matches ("!!!") is refused; the ISP judges the rest (the sandbox's scenario users
        # are written with "-").
        if self._username is not None and not self._username.search(request.username):
            raise field_error("username", "Invalid Username")
        if request.amount < MIN_RUPEES * 100:
            raise field_error("amount", f"The minimum amount is {MIN_RUPEES}")
        if request.amount > self.max_paisa:
            raise field_error(
                "amount", f"The maximum amount is {money.format_rupees(self.max_paisa)}"
            )
        return UseQuery(
            reference=request.reference,
            isp=self.slug,
            username=request.username,
            amount_paisa=request.amount,
        )

    def render_use(self, view: CommitView) -> dict[str, Any]:
        return {
            "status": True,
            "id": view.payment_id,
            "credits_available": money.to_rupees(view.available_paisa),
            "message": QUEUED_MESSAGE,
            "state": view.state,
            "credits_consumed": money.to_rupees(view.consumed_paisa),
        }
