"""Subisu (khalti-docs/Internet/subisu.md): one ISP, four shapes of subscriber. A details
call opens a session and shows, by the subscriber's plan_type ("internet", "tv",
"internet + tv", "combo offer"), the plans that can be bought; the commit pays one of four
things: the outstanding dues, a TV plan of one STB, an internet plan, or a combo offer,
each named by its name and amount. Docs: docs/services/subisu.md.

How the document's data sit in the generic model: each kind of thing to pay is a package
(INTERNET, TV, COMBO, DUES) and each plan a one-time duration (a bought plan is a "future
plan", never bought twice: decision S6), its codes ours; what the generic model has no
place for (an STB, a speed, a validity, the subscriber's address) is in `shown`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from bhuktani import money
from bhuktani.domain import State
from bhuktani.errors import CannotFulfil, IspRefusedField, field_error
from bhuktani.isps.base import Duration, Package, Shown, Subscriber
from bhuktani.services.base import (
    CommitQuery,
    CommitView,
    DetailsQuery,
    Examples,
    message_for,
    require_amount,
)
from bhuktani.services.fields import (
    LooseId,
    Reference,
    Username,
    WireModel,
    parse,
    reference_present,
)

SLUG = "subisu"

# The packages, by what is paid; their titles are the ISP protocol's names of the kinds.
INTERNET = "Internet"
TV = "TV"
COMBO = "Combo offer"
DUES = "Outstanding dues"
DUES_CODE = "outstanding"
OUTSTANDING_PAYMENT = "outstanding_payment"

# The document's words: its refusals, and its 1011's field message (decision S2).
NO_DUES = "No outstanding dues."
FUTURE_PLAN_EXISTS = "Future plan is already exist."
OFFER_MISMATCH = "Offer_name does not match with amount!"
# A Processing answer has no receipt yet to show in `detail`.
PENDING_DETAIL = "Payment is being processed."


# The sandbox's data, built as the document writes it.


def _internet(*plans: tuple[str, int, str, str | None, int]) -> Package:
    """Internet plans (name, rupees, primary_speed, volume_quota, days), in the listed
    order; a plan's code is its place in the list."""
    return Package(
        INTERNET,
        1,
        tuple(
            Duration.in_rupees(
                f"internet-{place}",
                name,
                rupees,
                days,
                once=True,
                shown={
                    "description": money.format_rupees(rupees * 100),
                    "primary_speed": speed,
                    "volume_quota": quota,
                    "validity": f"{days} Days",
                },
            )
            for place, (name, rupees, speed, quota, days) in enumerate(plans, 1)
        ),
    )


def _tv(*stbs: tuple[str, tuple[tuple[str, int, int], ...]]) -> Package:
    """TV plans (name, rupees, days) of each STB; a plan's code is its STB's place and its
    own (an STB's name may hold a space, which a code may not)."""
    return Package(
        TV,
        2,
        tuple(
            Duration.in_rupees(
                f"tv-{box}-{place}",
                name,
                rupees,
                days,
                once=True,
                shown={"stb": stb, "validity": f"{days} Days"},
            )
            for box, (stb, plans) in enumerate(stbs, 1)
            for place, (name, rupees, days) in enumerate(plans, 1)
        ),
    )


def _dues(rupees: int) -> Package:
    return Package(DUES, 4, (Duration.in_rupees(DUES_CODE, DUES, rupees, 0, once=True),))


def _watching(*boxes: tuple[str, str, str]) -> Shown:
    """tv_plan_list: the subscriber's STBs, with the plan each watches and until when."""
    return {
        "tv_plan_list": {
            "tv_plan_details": [
                {"current_video_plan_name": plan, "stb": stb, "expiry_date": expiry}
                for plan, stb, expiry in boxes
            ]
        }
    }


def _subscriber(
    username: str, customer_id: str, full_name: str, shown: Shown, *packages: Package
) -> Subscriber:
    return Subscriber(
        username=username,
        customer_id=customer_id,
        full_name=full_name,
        current_plan=str(shown.get("current_plan_name", "")),
        # Subisu shows an expiry date, not a count of days.
        days_remaining=0,
        has_due=any(p.title == DUES for p in packages),
        accept_advance_payment=True,
        packages=packages,
        shown={
            "onu_id": None,
            "partner_name": "Selfcare Test 1",
            "mobile_no": "9100000000",
            "address": "Baluwatar",
            **shown,
        },
    )


_NORTHBOUND_PLANS = (
    ("Internet Northbound", 10, "4096", None, 30),
    ("10Mbps 12Months BPKIHS", 4000, "10240", None, 360),
    ("Selfcare Renew eSewa", 10, "20480", None, 1),
    ("Selfcare Renew IPS & Card", 1, "20480", None, 1),
)

# The scenario users' base (docs/SANDBOX.md): not a documented user, but one with dues and
# something of every kind but a combo to pay. Its dues are the 1232 that the document's
# success example consumes (decision G7).
SANDBOX_USER = _subscriber(
    "sandbox-subscriber",
    "7000",
    "Sandbox Subscriber",
    {
        "current_plan_name": "Internet Northbound",
        "expiry_date": "2023-08-25T23:59:59",
        **_watching(("Video Tests Plan 1M", "SANDBOX0001", "2023-08-21T23:59:59")),
    },
    _dues(1232),
    _internet(("Internet Northbound", 10, "4096", None, 30)),
    _tv(("SANDBOX0001", (("Video Tests Plan 1M", 10, 30),))),
)

# The document's four test users, one of each plan_type.
KHALTI_INTERNET = _subscriber(
    "khaltiinternet",
    "7101",
    "Northbound Test Khalti",
    {"current_plan_name": "Internet Northbound", "expiry_date": "2023-08-25T23:59:59"},
    _internet(("Internet Northbound", 10, "0", "0", 30), *_NORTHBOUND_PLANS),
)
_COMBO_DATES: Shown = {
    "activation_date": "2023-08-30T00:00:00",
    "expiry_date": "2023-09-29T00:00:00",
    "allow_to_renew": "false",
}
KHALTI_OFFER = _subscriber(
    "khaltioffer",
    "7102",
    "Northbound Test Khalti",
    {
        "address": "khaltioffer",
        "current_plan_name": "Offer Test Data",
        "expiry_date": "2023-08-29T23:59:59",
        **_watching(("Offer Test Video", "ABCCD10BBBFC942B", "2023-08-29T23:59:59")),
    },
    Package(
        COMBO,
        3,
        (
            Duration.in_rupees(
                "offer-4237",
                "Combo Offer Test 2",
                10,
                30,
                once=True,
                shown={
                    "validity": "1 Months",
                    "offer_id": "4237",
                    "combo_plan_details": [
                        {
                            "plan_type": "Data",
                            "service_media": "FTTH",
                            **_COMBO_DATES,
                            "service_media_id": "11952",
                            "stb_id": None,
                            "is_primary": "false",
                            "expiry_date_string": "29-Sep-2023",
                            "activation_date_string": "30-Aug-2023",
                        },
                        {
                            "plan_type": "Video",
                            "service_media": "Clear TV(DTV)",
                            **_COMBO_DATES,
                            "service_media_id": "11956",
                            "stb_id": "780784",
                            "is_primary": "true",
                            "expiry_date_string": "29-Sep-2023",
                            "activation_date_string": "30-Aug-2023",
                        },
                    ],
                },
            ),
        ),
    ),
)
PAYPOINT_VIDEO = _subscriber(
    "paypoint_video",
    "7103",
    "Paypoint Video",
    {
        "expiry_date": None,
        **_watching(
            ("Video Tests Plan 1M", "sample5", "2023-06-17T23:59:59"),
            ("Mobile API DTV CHILD - TEST", "TEST0001", "2023-06-17T23:59:59"),
        ),
    },
    # Its second STB has no plan to buy (decision S5).
    _tv(("sample5", (("Video Tests Plan 1M", 10, 30),))),
)
KHALTI_VIDEO = _subscriber(
    "khaltivideo",
    "7104",
    "Khalti Video Plan",
    {
        "current_plan_name": "Selfcare Renew eSewa",
        "expiry_date": "2023-07-01T23:59:59",
        **_watching(
            ("Video offer child tests", "Sample 11", "2023-07-21T23:59:59"),
            ("Video Tests Plan 1M", "ABCC2C1D07B01A20", "2023-08-21T23:59:59"),
        ),
    },
    _internet(("Selfcare Renew eSewa", 10, "0", "0", 1), *_NORTHBOUND_PLANS),
    # The document lists each STB's plans twice: shown once each (decision S4).
    _tv(
        ("ABCC2C1D07B01A20", (("Video Tests Plan 1M", 10, 30),)),
        ("Sample 11", (("Video offer child tests", 3, 30),)),
    ),
)


# The wire.


def _is_zero(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float | Decimal):
        return value == 0
    return isinstance(value, str) and re.fullmatch(r"0+(\.0*)?", value.strip(" \t\r\n")) is not None


def _due_amount(value: Any) -> int:
    """An amount as fields.AmountPaisa reads it, or zero: the document's outstanding
    payment of a subscriber without dues sends "0.00" and is told there are none (S3)."""
    if _is_zero(value):
        return 0
    try:
        return money.to_paisa(value)
    except money.AmountError as exc:
        raise ValueError(str(exc)) from None


DueAmount = Annotated[int, BeforeValidator(_due_amount, json_schema_input_type=float | str)]


class DetailsRequest(WireModel):
    reference: Reference
    username: Username


class CommitRequest(WireModel):
    reference: Reference
    session_id: LooseId
    amount: DueAmount
    # "outstanding_payment", or left out to buy the plan named by offer_name.
    renew_type: str | None = Field(default=None, max_length=32)
    offer_name: str | None = Field(default=None, min_length=1, max_length=100)
    stb: str | None = Field(default=None, min_length=1, max_length=64)


@dataclass(frozen=True)
class Purchase(CommitQuery):
    """A commit as this group's parse_commit reads it: the dues, or a plan by its name
    (and STB, for a TV plan). `duration_code` is unused: the name and amount pick it."""

    dues: bool = False
    offer_name: str | None = None
    stb: str | None = None


def _offer_mismatch() -> IspRefusedField:
    """The document's 1011: the name and amount name no plan (decision S2: the message in
    error_data under offer_name, as every field refusal of ours)."""
    return IspRefusedField(
        f"offer_name: {OFFER_MISMATCH}", error_data={"offer_name": [OFFER_MISMATCH]}
    )


def _durations(subscriber: Subscriber, *kinds: str) -> list[Duration]:
    """Every plan of these kinds, bought ones too: the details still list them (S6)."""
    return [d for p in subscriber.packages if p.title in kinds for d in p.durations]


def _unpaid_dues(subscriber: Subscriber) -> tuple[Package, Duration] | None:
    return next(((p, d) for p, d in subscriber.offers() if p.title == DUES), None)


def _plan_type(subscriber: Subscriber) -> str:
    """The subscriber's shape, from what it can buy."""
    if _durations(subscriber, COMBO):
        return "combo offer"
    internet, tv = _durations(subscriber, INTERNET), _durations(subscriber, TV)
    if internet and tv:
        return "internet + tv"
    return "tv" if tv else "internet"


def _internet_plans(subscriber: Subscriber) -> dict[str, Any]:
    return {
        "internet_plan_details": [
            {
                "amount": money.to_rupees_shown(d.amount_paisa),
                "plan_name": d.title,
                "description": d.shown.get("description"),
                "primary_speed": d.shown.get("primary_speed"),
                "volume_quota": d.shown.get("volume_quota"),
                "validity": d.shown.get("validity"),
            }
            for d in _durations(subscriber, INTERNET)
        ]
    }


def _tv_plans(subscriber: Subscriber) -> list[dict[str, Any]]:
    """Each STB once, with its plans, in the order the ISP listed them."""
    by_stb: dict[str, list[dict[str, Any]]] = {}
    for d in _durations(subscriber, TV):
        stb = d.shown.get("stb")
        if isinstance(stb, str):
            by_stb.setdefault(stb, []).append(
                {
                    "amount": money.to_rupees_shown(d.amount_paisa),
                    "plan_name": d.title,
                    "validity": d.shown.get("validity"),
                }
            )
    return [{"stb": stb, "tv_plan_details": plans} for stb, plans in by_stb.items()]


def _combo_offers(subscriber: Subscriber) -> list[dict[str, Any]]:
    return [
        {
            "validity": d.shown.get("validity"),
            "offer_name": d.title,
            "offer_id": d.shown.get("offer_id"),
            "amount": money.to_rupees_shown(d.amount_paisa),
            "combo_plan_details": d.shown.get("combo_plan_details", []),
        }
        for d in _durations(subscriber, COMBO)
    ]


def _plan_detail_list(subscriber: Subscriber) -> dict[str, Any]:
    """The plans to buy, nested as the document nests each plan_type."""
    plan_type = _plan_type(subscriber)
    listed: Any
    if plan_type == "internet":
        listed = _internet_plans(subscriber)
    elif plan_type == "internet + tv":
        listed = {
            "internet_details": _internet_plans(subscriber),
            "tv_details": _tv_plans(subscriber),
        }
    elif plan_type == "tv":
        listed = _tv_plans(subscriber)
    else:
        listed = _combo_offers(subscriber)
    return {"plan_detail_list": listed, "plan_type": plan_type}


def _dues_price(subscriber: Subscriber, amount_paisa: int) -> tuple[Package, Duration]:
    dues = _unpaid_dues(subscriber)
    if dues is None:
        raise CannotFulfil(NO_DUES)
    require_amount(amount_paisa, dues[1], "the outstanding amount")
    return dues


def _plan_price(subscriber: Subscriber, purchase: Purchase) -> tuple[Package, Duration]:
    """The plan named by offer_name (and stb) at exactly the amount sent. Two plans listed
    with one name and one amount are one purchase as far as a commit can say: the first
    listed is paid, and once it is, the pair is a plan already bought."""
    kinds = (TV,) if purchase.stb is not None else (INTERNET, COMBO)
    candidates = [
        (p, d)
        for p in subscriber.packages
        if p.title in kinds
        for d in p.durations
        if purchase.stb is None or d.shown.get("stb") == purchase.stb
    ]
    if purchase.stb is not None and not candidates:
        raise field_error("stb", f"No TV plan to buy for STB {purchase.stb!r}")
    named = [
        (p, d)
        for p, d in candidates
        if d.title == purchase.offer_name and d.amount_paisa == purchase.amount_paisa
    ]
    if not named:
        if purchase.stb is None and any(
            d.title == purchase.offer_name for d in _durations(subscriber, TV)
        ):
            raise field_error(
                "stb", f"{purchase.offer_name!r} is a TV plan: send the stb it is for"
            )
        raise _offer_mismatch()
    if any(d.once and d.code in subscriber.paid for _, d in named):
        raise CannotFulfil(FUTURE_PLAN_EXISTS)
    return named[0]


class Subisu:
    slug = SLUG
    title = "Subisu"
    isps = (SLUG,)
    uses_sessions = True
    details_model: type[WireModel] = DetailsRequest
    commit_model: type[WireModel] = CommitRequest
    sandbox_subscribers = (
        SANDBOX_USER,
        KHALTI_INTERNET,
        KHALTI_OFFER,
        PAYPOINT_VIDEO,
        KHALTI_VIDEO,
    )
    # An internet payment of khaltivideo (decision S1).
    examples = Examples(
        details={"username": "khaltivideo"},
        commit={"session_id": 9020, "amount": "10", "offer_name": "Internet Northbound"},
    )

    def parse_details(self, data: dict[str, Any]) -> DetailsQuery:
        reference_present(data)
        request = parse(DetailsRequest, data)
        return DetailsQuery(isp=SLUG, username=request.username, reference=request.reference)

    def render_details(self, subscriber: Subscriber, session_id: int | None) -> dict[str, Any]:
        assert session_id is not None
        shown = subscriber.shown
        dues = _unpaid_dues(subscriber)
        answer: dict[str, Any] = {
            "customer_name": subscriber.full_name,
            "address": shown.get("address"),
        }
        # A TV-only subscriber's answer has no current_plan_name, an internet-only one's no
        # tv_plan_list: each is shown where the ISP gave it.
        if "current_plan_name" in shown:
            answer["current_plan_name"] = shown["current_plan_name"]
        answer |= {
            "user_id": subscriber.username,
            "outstanding_amount": money.format_rupees(dues[1].amount_paisa if dues else 0),
            "expiry_date": shown.get("expiry_date"),
            "mobile_no": shown.get("mobile_no"),
        }
        if "tv_plan_list" in shown:
            answer["tv_plan_list"] = shown["tv_plan_list"]
        return answer | {
            "onu_id": shown.get("onu_id"),
            "partner_name": shown.get("partner_name"),
            "plan_detail_list": _plan_detail_list(subscriber),
            "session_id": session_id,
            "status": True,
        }

    def parse_commit(self, data: dict[str, Any]) -> CommitQuery:
        reference_present(data)
        request = parse(CommitRequest, data)
        dues = request.renew_type is not None
        if dues and request.renew_type != OUTSTANDING_PAYMENT:
            raise field_error("renew_type", f"renew_type is {OUTSTANDING_PAYMENT!r} or left out")
        if not dues and request.offer_name is None:
            raise field_error(
                "offer_name",
                f"Send offer_name (the plan to buy) or renew_type {OUTSTANDING_PAYMENT!r}",
            )
        if not dues and request.amount == 0:
            raise field_error("amount", "Amount must be positive")
        return Purchase(
            reference=request.reference,
            amount_paisa=request.amount,
            duration_code="",
            session_id=request.session_id,
            dues=dues,
            offer_name=request.offer_name,
            stb=request.stb,
        )

    def choose(self, subscriber: Subscriber, query: CommitQuery) -> tuple[Package, Duration]:
        assert isinstance(query, Purchase), "made by parse_commit"
        if query.dues:
            return _dues_price(subscriber, query.amount_paisa)
        return _plan_price(subscriber, query)

    def render_commit(self, view: CommitView) -> dict[str, Any]:
        return {
            "status": True,
            "state": view.state,
            "message": message_for(view.state),
            "extra_data": {},
            # The ISP's receipt id (decision G6).
            "detail": view.receipt if view.state == State.SUCCESS else PENDING_DETAIL,
            # An int where whole, as documented (decision G7).
            "credits_consumed": money.to_rupees_shown(view.consumed_paisa),
            "credits_available": money.to_rupees(view.available_paisa),
            "id": view.payment_id,
        }


GROUP = Subisu()
