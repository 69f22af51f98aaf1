"""The simulated ISPs' subscribers (spec/SANDBOX.md), shared by the in-process sandbox and
by `isp-sim`, and what a payment does to a subscriber."""

from __future__ import annotations

from dataclasses import replace
from enum import Enum

from bhuktani.providers.base import Duration, Order, Package, Subscriber

HASHCNET_V2 = "hashcnet-v2"
ARROWNET = "arrownet"

HASHCNET_ISPS = (
    "airson-internet",
    "broadband-solutions",
    "everest-wireless",
    "fast-speed",
    "fiberworld-communication",
    "hons",
    "janaki-cable-network",
    "sahaj-network",
    "super-eight-networks",
    "ultra-net",
    "unified-communication-isp",
    "bbn-internet",
    "pokhara-internet-lekhnath",
    "vns",
    "techminds",
)


class Behaviour(Enum):
    NORMAL = "normal"
    REFUSE = "refuse"  # refuses every payment
    SLOW = "slow"  # answers after a long delay, then reports the payment paid
    FLAKY = "flaky"  # applies the payment, then the connection drops before the answer
    LOST = "lost"  # the payment never reaches the ISP


def _d(code: str, title: str, rupees: int, days: int) -> Duration:
    return Duration(code=code, title=title, amount_paisa=rupees * 100, days=days)


HASHCNET_PACKAGES = (
    Package(
        "Fiber Gold",
        9,
        (
            _d("1", "1 Month", 1232, 30),
            _d("3", "3 Months", 7876, 90),
            _d("6", "6 Months", 15750, 180),
            _d("12", "12 Months", 15750, 360),
            _d("custom_2", "15 Days", 1634, 15),
            _d("custom_3", "60 Days", 859, 60),
        ),
    ),
    Package(
        "FTTH-50Mbps",
        9,
        (
            _d("1", "1 Month", 999, 30),
            _d("3", "3 Months", 2800, 90),
            _d("6", "6 Months", 5300, 180),
            _d("12", "12 Months", 9999, 360),
            _d("custom_1", "12M + 1 IPTV", 13500, 360),
        ),
    ),
    Package("TESTING", 71, (_d("1", "1 Month", 2, 30),)),
)

ARROWNET_PACKAGES = (
    Package(
        "50Mbps",
        1,
        (
            _d("1", "1 Month", 1695, 30),
            _d("3", "3 Months", 5085, 90),
            _d("6", "6 Months", 9492, 180),
            _d("12", "12 Months", 17628, 360),
        ),
    ),
)

HASHCNET_USER = Subscriber(
    username="jeetenaug4",
    customer_id="23123213",
    full_name="jeetenaug4",
    current_plan="Fiber Gold",
    days_remaining=314,
    has_due=False,
    accept_advance_payment=True,
    packages=HASHCNET_PACKAGES,
)

ARROWNET_USER = Subscriber(
    username="Pradhanang",
    customer_id="1001",
    full_name="Ashish Pradhanang - Home",
    current_plan="50Mbps",
    days_remaining=464,
    has_due=False,
    accept_advance_payment=True,
    packages=ARROWNET_PACKAGES,
)

SCENARIOS: dict[str, Behaviour] = {
    "due-user": Behaviour.NORMAL,
    "expired-user": Behaviour.NORMAL,
    "refuse-user": Behaviour.REFUSE,
    "slow-user": Behaviour.SLOW,
    "flaky-user": Behaviour.FLAKY,
    "lost-user": Behaviour.LOST,
}


def normalise(username: str) -> str:
    return username.strip().lower()


def _scenario(base: Subscriber, username: str, index: int) -> Subscriber:
    subscriber = replace(
        base,
        username=username,
        customer_id=str(int(base.customer_id) + index + 1),
        full_name=f"Sandbox {username}",
    )
    if username == "due-user":
        subscriber = replace(subscriber, has_due=True)
    if username == "expired-user":
        subscriber = replace(subscriber, days_remaining=0)
    return subscriber


def _templates(base: Subscriber) -> dict[str, Subscriber]:
    found = {normalise(base.username): base}
    for index, username in enumerate(SCENARIOS):
        found[username] = _scenario(base, username, index)
    return found


TEMPLATES: dict[str, dict[str, Subscriber]] = {
    HASHCNET_V2: _templates(HASHCNET_USER),
    ARROWNET: _templates(ARROWNET_USER),
}


def isps(group: str) -> tuple[str, ...]:
    return HASHCNET_ISPS if group == HASHCNET_V2 else (ARROWNET,)


def group_of(isp: str) -> str | None:
    if isp in HASHCNET_ISPS:
        return HASHCNET_V2
    return ARROWNET if isp == ARROWNET else None


def template(isp: str, username: str) -> Subscriber | None:
    group = group_of(isp)
    if group is None:
        return None
    return TEMPLATES[group].get(normalise(username))


def behaviour(username: str) -> Behaviour:
    return SCENARIOS.get(normalise(username), Behaviour.NORMAL)


def find_price(subscriber: Subscriber, order: Order) -> Duration | None:
    for package in subscriber.packages:
        if package.title != order.package_title:
            continue
        for duration in package.durations:
            if duration.code == order.duration_code:
                return duration
    return None


def refusal(subscriber: Subscriber, order: Order) -> tuple[str, str | None] | None:
    """Why the ISP refuses this order, and which field, or None if it accepts it."""
    if behaviour(subscriber.username) is Behaviour.REFUSE:
        return ("The subscriber's account does not accept payments", None)
    price = find_price(subscriber, order)
    if price is None:
        return (
            f"No plan {order.package_title!r} for {order.duration_code!r}",
            "duration_code",
        )
    if price.amount_paisa != order.amount_paisa:
        return ("The amount does not match the plan price", "amount")
    return None


def after_payment(subscriber: Subscriber, order: Order) -> Subscriber:
    return replace(
        subscriber,
        current_plan=order.package_title,
        days_remaining=subscriber.days_remaining + order.days,
    )
