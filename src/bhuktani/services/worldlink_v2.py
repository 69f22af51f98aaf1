"""WorldLink V2: request models and response shapes of khalti-docs/Internet/worldlink.md
(docs/services/worldlink-v2.md). A details call shows the subscriber, what it can buy and
the amount it owes now, and opens a session; the commit pays that amount, or, naming a
`package_id`, one of the package options at its rate.

The document has three kinds of user, one answer shape each, and the subscriber's data
says which:
- a package option (a price that is not `once`: a package for a time) is listed in
  `package_options`, or, for a user whose `shown` has `available_renew_options` (the
  entries it is shown but cannot buy), after those in `available_renew_options`;
- a due (a `once` price) is what the details' `amount` asks for while unpaid; it is not a
  package option, so a user whose only offer is a due cannot switch;
- without a due, the `amount` is the subscribed package's option: its renewal."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

from bhuktani import money
from bhuktani.domain import State
from bhuktani.errors import NothingToPay, field_error
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
    Reference,
    Username,
    WireModel,
    parse,
    reference_present,
)

SLUG = "worldlink-v2"

# The subscriber's own fields each answer shows as the ISP gave them; the spelling of the
# subscribed package's id differs from user to user (decision W1), and one user has none.
SHOWN_KEYS = (
    "account_type",
    "branch",
    "subscribed_package_type",
    "subscribedPackageId",
    "subscribed_package_id",
    "message",
    "vatrefund_eligible",
    "renew_option",
    "due_amount_till_now",
    "due_remarks",
    "first_online_payment",
)
SUBSCRIBED_ID_KEYS = ("subscribedPackageId", "subscribed_package_id")
# A package option's own fields beside its id, name and rate.
OPTION_KEYS = (
    "packageLabel",
    "recommendOrder",
    "packageDuration",
    "tvEligiblePackage",
    "packageEligibility",
)
# Where a due-and-package user's options are listed. In the subscriber's `shown` it holds
# the entries the ISP lists but does not sell; the answer adds those it sells.
RENEW_OPTIONS = "available_renew_options"
NOTHING_TO_PAY = "No due payment and no package to renew"


def _renewal(code: int, name: str, rupees: int, days: int, **shown: Any) -> Package:
    return Package(
        name, code, (Duration.in_rupees("renew", f"{days} days", rupees, days, shown=shown),)
    )


_DUE_MESSAGE = "You have due payment."

# Package switchable: every package option can be bought at its rate (decision W5).
ONLINE_RENEW = Subscriber(
    username="online_renew",
    # The answers show no customer id: these are the sandbox's own.
    customer_id="7001",
    full_name="Online Renew",
    current_plan="Value Standard 25mbps/3mths 1TV (Renew)",
    days_remaining=0,
    has_due=True,
    accept_advance_payment=True,
    packages=(
        _renewal(1888117, "Fiber Smart home 2019-25mbps/3 mths(Renew)", 4915, 90),
        _renewal(1888314, "Value Standard 25mbps/3mths 1TV (Renew)", 4915, 90),
        _renewal(1888118, "Fiber Smart home 2019-40mbps/3 mths(Renew)", 5932, 90),
        _renewal(1888119, "Fiber Smart home 2019-60mbps/3 mths(Renew)", 8475, 90),
        _renewal(1888123, "Fiber Smart home 2019-25mbps/12mths(Renew)", 16272, 365),
        _renewal(1888124, "Fiber Smart home 2019-40mbps/12mths(Renew)", 19097, 365),
        _renewal(1888125, "Fiber Smart home 2019-60mbps/12mths(Renew)", 28250, 365),
    ),
    shown={
        "subscribed_package_type": "Unlimited",
        "subscribedPackageId": 1888314,
        "message": _DUE_MESSAGE,
        "renew_option": False,
        "first_online_payment": False,
    },
)


def _not_for_sale(
    code: int, name: str, rupees: int, order: int, days: str, tv: int
) -> dict[str, Any]:
    return {
        "packageId": code,
        "packageName": name,
        "packageRate": rupees,
        "packageLabel": f"{name} [Rs. {rupees}]",
        "recommendOrder": order,
        "packageDuration": days,
        "tvEligiblePackage": tv,
        "packageEligibility": False,
    }


# Package switchable with a due: of its renew options only the subscribed one is eligible,
# and that one alone is sold, its due not added (decision W4). The names are the
# document's, the trailing tab included (W3).
ONLINE_DUE_AND_PACKAGE = Subscriber(
    username="online_due_and_package",
    customer_id="7101",
    full_name="online_due_and_package",
    current_plan="BTL 120Mbps/12mths With 1TV New Year Dhamaka 079",
    days_remaining=0,
    has_due=True,
    accept_advance_payment=True,
    packages=(
        _renewal(
            1888768,
            "BTL 120Mbps/12mths With 1TV New Year Dhamaka 079",
            12204,
            365,
            packageLabel="BTL 120Mbps/12mths With 1TV New Year Dhamaka 079 [Rs.12204]",
            tvEligiblePackage=0,
            packageEligibility=True,
            packageDuration=0,
            recommendOrder=0,
            amount_detail=[
                {
                    "amount": 12204,
                    "creditor": "worldlink",
                    "particular": "Internet",
                    "creditorPan": "300073250",
                }
            ],
        ),
    ),
    shown={
        "account_type": "PERSONAL",
        "branch": "REGION2-NBU4",
        "subscribed_package_type": "Unlimited",
        "subscribed_package_id": 1888768,
        "message": _DUE_MESSAGE,
        "vatrefund_eligible": True,
        RENEW_OPTIONS: [
            _not_for_sale(18881068, "WorldLink TurboSpeed Plus 150Mbps/12M\t", 13108, 1, "365", 0),
            _not_for_sale(1888857, "Smart Offer (1TV) 2079 200mbps/12mths", 16272, 2, "365", 1),
            _not_for_sale(
                1888767, "BTL 120Mbps/3mths With 1TV New Year Dhamaka 079", 3220, 3, "90", 0
            ),
            _not_for_sale(1888668, "Special BTL 120Mbps/mth (1TV)", 1356, 4, "30", 0),
            _not_for_sale(1888858, "Smart Offer (1TV) 2079 250mbps/12mths", 16950, 5, "365", 1),
            _not_for_sale(18881115, "New Smart Offer (1TV) 2081 200Mbps/6mths", 8927, 6, "180", 0),
            _not_for_sale(
                18881116, "New smart Offer (1TV) 2081 200Mbps/24mths", 23041, 7, "730", 0
            ),
        ],
        "renew_option": True,
        "due_amount_till_now": 301,
        "due_remarks": "used 9 days of BTL 120Mbps/12mths With 1TV New Year Dhamaka 079 (1888768)",
        "first_online_payment": False,
    },
)

# Package non-switchable with a due: it pays its due, once, without a package_id (W6). The
# document gives its package no id; 0 stands for none and is never shown.
ONLINE_DUE_PAYMENT = Subscriber(
    username="online_due_payment",
    customer_id="7201",
    full_name="Online Due Payment",
    current_plan="Value Standard 25mbps/3mths 1TV (Renew)",
    days_remaining=0,
    has_due=True,
    accept_advance_payment=False,
    packages=(
        Package(
            "Value Standard 25mbps/3mths 1TV (Renew)",
            0,
            # A due pays for days already used: it adds none.
            (Duration.in_rupees("due", "Due payment", 4950, 0, once=True),),
        ),
    ),
    shown={
        "branch": "MANIGRAM",
        "subscribed_package_type": "Unlimited",
        "message": _DUE_MESSAGE,
        "renew_option": False,
        "first_online_payment": False,
    },
)

PAID_DETAIL = "Transaction successful"
PENDING_DETAIL = "Transaction pending"


def _absent_if_blank(value: Any) -> Any:
    """An OPTIONAL package_id left empty is no package_id."""
    return None if isinstance(value, str) and not value.strip() else value


class DetailsRequest(WireModel):
    reference: Reference
    username: Username


class CommitRequest(WireModel):
    reference: Reference
    session_id: LooseId
    amount: AmountPaisa
    package_id: Annotated[LooseId | None, BeforeValidator(_absent_if_blank)] = None


Offer = tuple[Package, Duration]


def _package_options(subscriber: Subscriber) -> list[Offer]:
    """What a package_id can buy: every offer but a due."""
    return [(p, d) for p, d in subscriber.offers() if not d.once]


def _owed(subscriber: Subscriber) -> Offer | None:
    """What the details' amount asks for: the unpaid due, else the subscribed package's
    renewal; None when there is neither."""
    offers = subscriber.offers()
    due = next(((p, d) for p, d in offers if d.once), None)
    if due is not None:
        return due
    return next(
        ((p, d) for p, d in _package_options(subscriber) if p.title == subscriber.current_plan),
        None,
    )


def _rupees(duration: Duration) -> int | float:
    return money.to_rupees_shown(duration.amount_paisa)


def _option(package: Package, duration: Duration) -> dict[str, Any]:
    rate = _rupees(duration)
    option = {
        "packageId": package.code,
        "packageName": package.title,
        "packageRate": rate,
        "packageLabel": f"{package.title} [Rs. {rate}]",
    }
    return option | {key: duration.shown[key] for key in OPTION_KEYS if key in duration.shown}


def _amount_detail(duration: Duration) -> Any:
    """The ISP's breakdown of the amount where it gives one; else one line of it all."""
    return duration.shown.get("amount_detail") or [
        {"particular": "Internet", "amount": _rupees(duration)}
    ]


class WorldlinkV2:
    slug = SLUG
    title = "WorldLink V2"
    isps = (SLUG,)
    uses_sessions = True
    details_model: type[WireModel] = DetailsRequest
    commit_model: type[WireModel] = CommitRequest
    # online_renew first: the scenario users are built from it, and its renewal can be
    # paid again and again (a due is paid once), with or without a package_id.
    sandbox_subscribers = (ONLINE_RENEW, ONLINE_DUE_AND_PACKAGE, ONLINE_DUE_PAYMENT)
    examples = Examples(
        details={"username": "online_due_payment"},
        commit={"session_id": "224", "amount": 4950},
    )

    def parse_details(self, data: dict[str, Any]) -> DetailsQuery:
        reference_present(data)
        request = parse(DetailsRequest, data)
        return DetailsQuery(isp=SLUG, username=request.username, reference=request.reference)

    def render_details(self, subscriber: Subscriber, session_id: int | None) -> dict[str, Any]:
        assert session_id is not None
        owed = _owed(subscriber)
        if owed is None:
            raise NothingToPay(NOTHING_TO_PAY)
        _, price = owed
        shown = subscriber.shown
        answer: dict[str, Any] = {
            "username": subscriber.username,
            "full_name": subscriber.full_name,
            "subscribed_package_name": subscriber.current_plan,
            "days_remaining": subscriber.days_remaining,
        }
        answer |= {key: shown[key] for key in SHOWN_KEYS if key in shown}
        current = subscriber.current_package()
        for key in SUBSCRIBED_ID_KEYS:
            # After a switch the subscribed package is the one paid for.
            if key in answer and current is not None:
                answer[key] = current.code
        options = [_option(p, d) for p, d in _package_options(subscriber)]
        if RENEW_OPTIONS in shown:
            listed = shown[RENEW_OPTIONS]
            answer["package_options"] = []
            answer[RENEW_OPTIONS] = [*(listed if isinstance(listed, list) else []), *options]
        else:
            answer["package_options"] = options
        answer |= {
            "amount_detail": _amount_detail(price),
            "amount": _rupees(price),
            "session_id": session_id,
            "status": True,
        }
        return answer

    def parse_commit(self, data: dict[str, Any]) -> CommitQuery:
        reference_present(data)
        request = parse(CommitRequest, data)
        return CommitQuery(
            reference=request.reference,
            amount_paisa=request.amount,
            duration_code="",
            session_id=request.session_id,
            package_code=request.package_id,
        )

    def choose(self, subscriber: Subscriber, query: CommitQuery) -> Offer:
        if query.package_code is None:
            owed = _owed(subscriber)
            if owed is None:
                raise NothingToPay(NOTHING_TO_PAY)
            require_amount(query.amount_paisa, owed[1], "the amount owed")
            return owed
        named = [(p, d) for p, d in _package_options(subscriber) if p.code == query.package_code]
        if not named:
            raise field_error(
                "package_id", f"Package {query.package_code} is not for sale to this subscriber"
            )
        if len(named) > 1:
            raise field_error(
                "package_id", f"Package id {query.package_code} names {len(named)} packages"
            )
        require_amount(query.amount_paisa, named[0][1], "the package rate")
        return named[0]

    def render_commit(self, view: CommitView) -> dict[str, Any]:
        return {
            "status": True,
            "state": view.state,
            "message": message_for(view.state),
            "extra_data": {},
            "detail": PAID_DETAIL if view.state == State.SUCCESS else PENDING_DETAIL,
            "id": view.payment_id,
        }


GROUP = WorldlinkV2()
