"""What an ISP says, made safe at the edge, before it reaches a record, a session or a
merchant: an ISP may be broken or hostile, and nothing it sends is taken as it comes.

- Prices, days and codes are bounded: a plan (duration) that could not be sold is never
  offered; it is dropped, and the rest of the subscriber is served.
- Text a person reads (names, titles, reasons) keeps its printable characters; any other
  (NUL, control characters, lone surrogates, line separators) becomes U+FFFD, and a text
  is cut to its column's size.
- Text that names something (the username, package titles, duration codes) is never
  changed, since the ISP must recognise it when it is sent back: an unclean one drops its
  package or duration, or, for the username, makes the subscriber unreadable (1018).
- A group's own fields (`shown`: a bill's VAT, an STB) are shown to merchants as they
  come, so their texts are made safe like names, their keys must be plain field names,
  and their size and depth are bounded; what does not fit is left out.
- A receipt confirms a payment the ISP applied: a bad one never makes the payment less
  final. Its unsafe characters are escaped (NUL as \\x00) and it is cut to length; the
  provider logs the raw value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from bhuktani.isps.base import Duration, Package, Subscriber
from bhuktani.money import MAX_AMOUNT_PAISA

# Ten years: no plan is sold for longer, and the count fits every INTEGER column.
MAX_PLAN_DAYS = 3660
# Days remaining are shown, never priced: a count below 0 (the plan ran out) is shown as 0,
# one above a hundred years as a hundred years, and neither refuses the look-up.
MAX_DAYS_REMAINING = 36_600
# Package codes come back from merchants as LooseId (wire.MAX_ID) and go to JSON clients.
MAX_PACKAGE_CODE = 2**53
# The column sizes of store/schema.py (payments.username, package_title, duration_code).
USERNAME_CHARS = 100
TITLE_CHARS = 100
NAME_CHARS = 200
CUSTOMER_ID_CHARS = 64
RECEIPT_CHARS = 100
REASON_CHARS = 200
# At most this many are read: a bigger offer is not a real ISP's.
MAX_PACKAGES = 100
MAX_DURATIONS = 50
# A group's own fields: nesting, items of a list or object, characters of a text.
MAX_SHOWN_DEPTH = 6
MAX_SHOWN_ITEMS = 100
SHOWN_TEXT_CHARS = 500

# The documents' codes ("1", "custom_2"): what a merchant can send back (wire.LooseCode).
_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,32}")
_FIELD = re.compile(r"[A-Za-z0-9_.]{1,64}")
# Zero-width (non-)joiners are format characters that Devanagari names need.
_JOINERS = frozenset("\u200c\u200d")
REPLACEMENT = "\ufffd"


class Unreadable(ValueError):
    """The subscriber cannot be served: a field that names it is unclean or out of range."""


@dataclass(frozen=True)
class Checked:
    subscriber: Subscriber
    # What was left out or changed, for the log: never shown to a merchant.
    dropped: tuple[str, ...]


def _safe_char(char: str) -> bool:
    return char.isprintable() or char in _JOINERS


def shown(text: str, limit: int) -> str:
    """Text for a person: a tab as a space (it is white space, as a space is), other
    unsafe characters replaced, cut to `limit` characters."""
    if not all(_safe_char(c) for c in text):
        text = "".join(c if _safe_char(c) else " " if c == "\t" else REPLACEMENT for c in text)
    return cut(text, limit)


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_clean(text: str, limit: int) -> bool:
    """Whether a naming text can be used as it is: printable, trimmed, within `limit`."""
    return 0 < len(text) <= limit and text == text.strip() and all(_safe_char(c) for c in text)


def receipt(raw: str) -> str:
    """A receipt safe to store and show: unsafe characters escaped, cut to length."""
    if all(c.isprintable() for c in raw) and len(raw) <= RECEIPT_CHARS:
        return raw
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in raw[: RECEIPT_CHARS * 2])
    return cut(escaped, RECEIPT_CHARS)


def reason(raw: str) -> str:
    return shown(raw, REASON_CHARS)


def field(raw: str) -> str | None:
    """The request field an ISP refusal names, if it is a plausible field name."""
    return raw if _FIELD.fullmatch(raw) else None


def _shown_value(value: Any, depth: int) -> Any:
    """A JSON value made safe to show; None for one that is not kept."""
    if isinstance(value, str):
        return shown(value, SHOWN_TEXT_CHARS)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= MAX_SHOWN_DEPTH:
        return None
    if isinstance(value, list):
        return [_shown_value(item, depth + 1) for item in value[:MAX_SHOWN_ITEMS]]
    if isinstance(value, dict):
        return _shown_object(value, depth + 1)
    return None


def _shown_object(value: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    return {
        key: _shown_value(item, depth)
        for key, item in list(value.items())[:MAX_SHOWN_ITEMS]
        if isinstance(key, str) and _FIELD.fullmatch(key)
    }


def _duration(duration: Duration, where: str) -> tuple[Duration | None, str | None]:
    if not _CODE.fullmatch(duration.code):
        return None, f"{where}: duration code {duration.code[:40]!r} is not a code"
    if not 0 < duration.amount_paisa <= MAX_AMOUNT_PAISA:
        return None, f"{where} {duration.code}: price {duration.amount_paisa} paisa"
    top = duration.max_amount_paisa
    if top is not None and not duration.amount_paisa <= top <= MAX_AMOUNT_PAISA:
        return None, f"{where} {duration.code}: price up to {top} paisa"
    if not 0 <= duration.days <= MAX_PLAN_DAYS:
        return None, f"{where} {duration.code}: {duration.days} days"
    return replace(
        duration,
        title=shown(duration.title, TITLE_CHARS),
        shown=_shown_object(duration.shown),
    ), None


def _package(package: Package, index: int) -> tuple[Package | None, list[str]]:
    where = f"package {index}"
    if not is_clean(package.title, TITLE_CHARS):
        return None, [f"{where}: title {package.title[:40]!r} is unclean or too long"]
    if not 0 <= package.code <= MAX_PACKAGE_CODE:
        return None, [f"{where}: code {str(package.code)[:40]}"]
    dropped = []
    if len(package.durations) > MAX_DURATIONS:
        dropped.append(f"{where}: {len(package.durations) - MAX_DURATIONS} durations past")
    durations = []
    for duration in package.durations[:MAX_DURATIONS]:
        kept, why = _duration(duration, where)
        if kept is None:
            assert why is not None
            dropped.append(why)
        else:
            durations.append(kept)
    return replace(package, durations=tuple(durations)), dropped


def checked(subscriber: Subscriber) -> Checked:
    """The subscriber as it may be offered; raises Unreadable when it cannot be at all."""
    if not is_clean(subscriber.username, USERNAME_CHARS):
        raise Unreadable("the subscriber's username is unclean or too long")
    dropped: list[str] = []
    if len(subscriber.packages) > MAX_PACKAGES:
        dropped.append(f"{len(subscriber.packages) - MAX_PACKAGES} packages past")
    packages = []
    for index, package in enumerate(subscriber.packages[:MAX_PACKAGES]):
        kept, why = _package(package, index)
        dropped += why
        if kept is not None:
            packages.append(kept)
    days_remaining = min(max(subscriber.days_remaining, 0), MAX_DAYS_REMAINING)
    if days_remaining != subscriber.days_remaining:
        told = str(subscriber.days_remaining)[:40]
        dropped.append(f"days remaining {told} shown as {days_remaining}")
    safe = replace(
        subscriber,
        customer_id=shown(subscriber.customer_id, CUSTOMER_ID_CHARS),
        full_name=shown(subscriber.full_name, NAME_CHARS),
        current_plan=shown(subscriber.current_plan, TITLE_CHARS),
        days_remaining=days_remaining,
        packages=tuple(packages),
        shown=_shown_object(subscriber.shown),
        paid=tuple(code for code in subscriber.paid[:MAX_SHOWN_ITEMS] if _CODE.fullmatch(code)),
    )
    return Checked(safe, tuple(dropped))
