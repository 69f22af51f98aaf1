"""Subscribers as JSON: the snapshot a session keeps, and the ISP protocol's body."""

from __future__ import annotations

from typing import Any

from bhuktani.isps.base import Duration, Package, Subscriber


def subscriber_to_json(subscriber: Subscriber) -> dict[str, Any]:
    """The optional fields (a group's own, one-time offers, a price range) are written
    only where set: a session keeps a snapshot per details call, and what most groups'
    subscribers would carry as empty defaults made each one half as big again."""
    found: dict[str, Any] = {
        "username": subscriber.username,
        "customer_id": subscriber.customer_id,
        "full_name": subscriber.full_name,
        "current_plan": subscriber.current_plan,
        "days_remaining": subscriber.days_remaining,
        "has_due": subscriber.has_due,
        "accept_advance_payment": subscriber.accept_advance_payment,
        "packages": [
            {
                "title": package.title,
                "code": package.code,
                "durations": [_duration_to_json(d) for d in package.durations],
            }
            for package in subscriber.packages
        ],
    }
    if subscriber.shown:
        found["shown"] = subscriber.shown
    if subscriber.paid:
        found["paid"] = list(subscriber.paid)
    return found


def _duration_to_json(duration: Duration) -> dict[str, Any]:
    found: dict[str, Any] = {
        "code": duration.code,
        "title": duration.title,
        "amount_paisa": duration.amount_paisa,
        "days": duration.days,
    }
    if duration.once:
        found["once"] = True
    if duration.shown:
        found["shown"] = duration.shown
    if duration.max_amount_paisa is not None:
        found["max_amount_paisa"] = duration.max_amount_paisa
    return found


def subscriber_from_json(data: dict[str, Any]) -> Subscriber:
    """Read a subscriber; raises KeyError, TypeError or ValueError on a malformed body.
    `once`, `shown`, `max_amount_paisa` and `paid` may be left out (where not set)."""
    packages = tuple(
        Package(
            title=_str(p["title"]),
            code=_int(p["code"]),
            durations=tuple(
                Duration(
                    code=_str(d["code"]),
                    title=_str(d["title"]),
                    amount_paisa=_int(d["amount_paisa"]),
                    days=_int(d["days"]),
                    once=_bool(d.get("once", False)),
                    shown=_object(d.get("shown", {})),
                    max_amount_paisa=_optional_int(d.get("max_amount_paisa")),
                )
                for d in p["durations"]
            ),
        )
        for p in data["packages"]
    )
    return Subscriber(
        username=_str(data["username"]),
        customer_id=_str(data["customer_id"]),
        full_name=_str(data["full_name"]),
        current_plan=_str(data["current_plan"]),
        days_remaining=_int(data["days_remaining"]),
        has_due=_bool(data["has_due"]),
        accept_advance_payment=_bool(data["accept_advance_payment"]),
        packages=packages,
        shown=_object(data.get("shown", {})),
        paid=tuple(_str(code) for code in _list(data.get("paid", []))),
    )


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _object(value: Any) -> dict[str, Any]:
    """A group's own fields: any JSON object (its values are the group's to read)."""
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    return value
