"""The one place where rupees from the wire become integer paisa, and back."""

from __future__ import annotations

import re
from decimal import Decimal

PAISA_PER_RUPEE = 100
# No ISP plan costs anywhere near this; a bound keeps every amount finite and small.
MAX_AMOUNT_PAISA = 10_000_000 * PAISA_PER_RUPEE
# Operator credit loads may be far larger than any one payment.
MAX_LOAD_PAISA = 10**12 * PAISA_PER_RUPEE
MAX_DIGITS = 15


class AmountError(ValueError):
    pass


# A decimal number as the wire writes it: ASCII digits only, no `_` (which Decimal() takes),
# no space inside; an exponent, as JSON allows one.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# What may surround an amount sent as a string: ASCII white space, nothing more exotic.
_SPACE = " \t\r\n"
# The spelling nearly every request uses, "1695.00" or "1695": read in integers, without
# building a Decimal (a third of the parse's time on a commit).
_PLAIN = re.compile(r"([0-9]{1,15})(?:\.([0-9]{1,2}))?")


def to_paisa(value: object, *, max_paisa: int = MAX_AMOUNT_PAISA) -> int:
    """Read an amount sent as a JSON number or a string of rupees, at most 2 decimals,
    exactly: no decimal context ever rounds it (998.99999... is not 999)."""
    if isinstance(value, bool) or value is None:
        raise AmountError("Amount must be a number")
    plain = _PLAIN.fullmatch(value) if isinstance(value, str) else None
    if plain is not None:
        whole, cents = plain.groups()
        return _bounded(int(whole) * PAISA_PER_RUPEE + int((cents or "").ljust(2, "0")), max_paisa)
    if isinstance(value, Decimal):
        # parse_object's JSON numbers: Decimal() of the JSON text, which is exact.
        rupees = value
    elif isinstance(value, int) and value.bit_length() > 64:
        raise AmountError("Amount is too large")
    elif isinstance(value, (int, float, str)):
        rupees = _decimal(value)
    else:
        raise AmountError("Amount must be a number")
    if not rupees.is_finite():
        raise AmountError("Amount must be finite")
    # Checked before any arithmetic: 1e999999 would overflow the decimal context.
    if rupees.adjusted() > MAX_DIGITS:
        raise AmountError("Amount is too large")
    return _bounded(_exact_paisa(rupees), max_paisa)


def _bounded(paisa: int, max_paisa: int) -> int:
    if paisa <= 0:
        raise AmountError("Amount must be positive")
    if paisa > max_paisa:
        raise AmountError("Amount is too large")
    return paisa


def _decimal(value: int | float | str) -> Decimal:
    """A number's text as a Decimal, refused unless it is plainly a decimal number."""
    if isinstance(value, str):
        text = value.strip(_SPACE)
        if len(text) > 20:
            raise AmountError("Amount is too long")
    else:
        # A float through its shortest repr: 999.0 is 999 rupees, 0.1 is 10 paisa.
        text = repr(value) if isinstance(value, float) else str(value)
    if not _NUMBER.fullmatch(text):
        raise AmountError(f"Amount {value!r} is not a number")
    return Decimal(text)


def _exact_paisa(rupees: Decimal) -> int:
    """rupees * 100 in integers, from the Decimal's digits: Decimal arithmetic would round
    to the context's 28 digits first."""
    sign, digits, exponent = rupees.as_tuple()
    assert isinstance(exponent, int), "finite"
    exponent += 2  # rupees to paisa
    if exponent < 0:
        kept = digits[: max(len(digits) + exponent, 0)]
        if any(digits[len(kept) :]):
            raise AmountError("Amount has more than 2 decimal places")
        digits, exponent = kept, 0
    # adjusted() <= MAX_DIGITS bounds both the digits kept and the exponent.
    coefficient = int("".join(map(str, digits)) or "0")
    paisa: int = coefficient * 10**exponent
    return -paisa if sign else paisa


def to_rupees(amount_paisa: int) -> float:
    """Rupees as a JSON float, for the fields the documents show as numbers."""
    return amount_paisa / PAISA_PER_RUPEE


def to_rupees_shown(amount_paisa: int) -> int | float:
    """Rupees as the documents show some prices: an integer where whole, else a float."""
    rupees = to_rupees(amount_paisa)
    return int(rupees) if rupees.is_integer() else rupees


def format_rupees(amount_paisa: int) -> str:
    """Rupees as the documents' strings: "1695.00"."""
    sign = "-" if amount_paisa < 0 else ""
    whole, part = divmod(abs(amount_paisa), PAISA_PER_RUPEE)
    return f"{sign}{whole}.{part:02d}"
