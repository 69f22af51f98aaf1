"""isps.codec: a subscriber survives the ISP protocol and a session's snapshot as it was,
a group's own fields included, and an ISP of a group without them may leave them out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from bhuktani.isps.base import Duration, Package, Subscriber
from bhuktani.isps.codec import subscriber_from_json, subscriber_to_json
from bhuktani.services import arrownet

BILL = Duration(
    "1613142_PP",
    "FiberNet Home CRush (1 year)",
    27798,
    0,
    once=True,
    shown={"vat_amount": "30.55", "grand_total": "277.98", "nested": [{"a": None}]},
)
WITH_BILLS = Subscriber(
    username="9099",
    customer_id="110871",
    full_name="Suman  Shrestha",
    current_plan="",
    days_remaining=0,
    has_due=True,
    accept_advance_payment=False,
    packages=(Package("Bills", 0, (BILL,)),),
    shown={"zone": "Mid-West | Bheri Zone", "quantity": 1},
    paid=("1613143_PP",),
)


@pytest.mark.parametrize("subscriber", [WITH_BILLS, arrownet.SANDBOX_USER])
def test_a_subscriber_comes_back_as_it_went(subscriber: Subscriber) -> None:
    wire = orjson.loads(orjson.dumps(subscriber_to_json(subscriber)))
    assert subscriber_from_json(wire) == subscriber


def test_the_optional_fields_are_written_only_where_set() -> None:
    """A group without them sends (and a session keeps) the subscriber as it was before
    they existed: every details call writes one."""
    wire: dict[str, Any] = subscriber_to_json(arrownet.SANDBOX_USER)
    assert "shown" not in wire and "paid" not in wire
    for package in wire["packages"]:
        for duration in package["durations"]:
            assert set(duration) == {"code", "title", "amount_paisa", "days"}
    assert subscriber_from_json(wire) == arrownet.SANDBOX_USER
    full = subscriber_to_json(WITH_BILLS)
    assert full["paid"] == ["1613143_PP"] and full["shown"]["quantity"] == 1
    assert full["packages"][0]["durations"][0]["once"] is True


@pytest.mark.parametrize(
    ("where", "value"),
    [("shown", []), ("shown", "zone"), ("paid", "1613142_PP"), ("paid", [1])],
)
def test_a_groups_own_fields_of_the_wrong_type_are_unreadable(where: str, value: Any) -> None:
    wire = subscriber_to_json(replace(WITH_BILLS))
    wire[where] = value
    with pytest.raises(TypeError):
        subscriber_from_json(wire)
