"""The simulated ISPs' subscribers (docs/SANDBOX.md): each service group's sandbox subscriber
and the scenario users derived from it, shared by the in-process sandbox and
by `isp-sim`, and what a payment does to a subscriber."""

from __future__ import annotations

from dataclasses import replace
from enum import Enum

from bhuktani.isps.base import Duration, Order, Subscriber, username_key
from bhuktani.services import registry


class Behaviour(Enum):
    NORMAL = "normal"
    REFUSE = "refuse"  # refuses every payment
    SLOW = "slow"  # answers after a long delay, then reports the payment paid
    FLAKY = "flaky"  # applies the payment, then the connection drops before the answer
    LOST = "lost"  # the payment never reaches the ISP


SCENARIOS: dict[str, Behaviour] = {
    "due-user": Behaviour.NORMAL,
    "expired-user": Behaviour.NORMAL,
    "refuse-user": Behaviour.REFUSE,
    "slow-user": Behaviour.SLOW,
    "flaky-user": Behaviour.FLAKY,
    "lost-user": Behaviour.LOST,
}


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


def _templates(documented: tuple[Subscriber, ...]) -> dict[str, Subscriber]:
    found = {username_key(subscriber.username): subscriber for subscriber in documented}
    for index, username in enumerate(SCENARIOS):
        found[username] = _scenario(documented[0], username, index)
    return found


# Each group's subscribers: its document's test users and the scenario users derived from
# the first.
TEMPLATES: dict[str, dict[str, Subscriber]] = {
    group.slug: _templates(group.sandbox_subscribers) for group in registry.SERVICES
}


def known(group: str, isp: str) -> bool:
    """Whether `isp` is one of the ISPs of the service group `group`."""
    found = registry.group_of(isp)
    return found is not None and found.slug == group


def template(isp: str, username: str) -> Subscriber | None:
    group = registry.group_of(isp)
    if group is None:
        return None
    return TEMPLATES[group.slug].get(username_key(username))


def behaviour(username: str) -> Behaviour:
    return SCENARIOS.get(username_key(username), Behaviour.NORMAL)


def find_price(subscriber: Subscriber, order: Order) -> Duration | None:
    """The price the order names among the subscriber's offers (a one-time offer already
    paid is none); on every sandbox payment, so it builds nothing."""
    for package in subscriber.packages:
        if package.title != order.package_title:
            continue
        for duration in package.durations:
            if duration.code == order.duration_code:
                return None if duration.once and duration.code in subscriber.paid else duration
    return None


PAID_BEFORE = "This has already been paid"


def paid_once(subscriber: Subscriber, order: Order) -> bool:
    """Whether the order is for a one-time offer (a bill, a due) already paid."""
    return order.duration_code in subscriber.paid and any(
        d.once and d.code == order.duration_code for p in subscriber.packages for d in p.durations
    )


def refusal(subscriber: Subscriber, order: Order) -> tuple[str, str | None] | None:
    """Why the ISP refuses this order, and which field, or None if it accepts it."""
    if behaviour(subscriber.username) is Behaviour.REFUSE:
        return ("The subscriber's account does not accept payments", None)
    if paid_once(subscriber, order):
        return (PAID_BEFORE, None)
    price = find_price(subscriber, order)
    if price is None:
        return (
            f"No plan {order.package_title!r} for {order.duration_code!r}",
            "duration_code",
        )
    if not price.accepts(order.amount_paisa):
        return ("The amount does not match the plan price", "amount")
    return None


def once_code(subscriber: Subscriber, order: Order) -> str | None:
    """The code a payment adds to the subscriber's `paid`: that of a one-time offer."""
    price = find_price(subscriber, order)
    return price.code if price is not None and price.once else None


def after_payment(subscriber: Subscriber, order: Order) -> Subscriber:
    code = once_code(subscriber, order)
    return replace(
        subscriber,
        current_plan=order.package_title,
        days_remaining=subscriber.days_remaining + order.days,
        paid=subscriber.paid if code is None else (*subscriber.paid, code),
    )
