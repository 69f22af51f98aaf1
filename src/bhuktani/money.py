"""The one place where rupees from the wire become integer paisa, and back."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

PAISA_PER_RUPEE = 100
# No ISP plan costs anywhere near this; a bound keeps every amount finite and small.
MAX_AMOUNT_PAISA = 10_000_000 * PAISA_PER_RUPEE
# Operator credit loads may be far larger than any one payment.
MAX_LOAD_PAISA = 10**12 * PAISA_PER_RUPEE
MAX_DIGITS = 15


class AmountError(ValueError):
    pass


def to_paisa(value: object, *, max_paisa: int = MAX_AMOUNT_PAISA) -> int:
    """Read an amount sent as a JSON number or a string of rupees, at most 2 decimals."""
    if isinstance(value, bool) or value is None:
        raise AmountError("Amount must be a number")
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, int) and value.bit_length() > 64:
        raise AmountError("Amount is too large")
    elif isinstance(value, (int, Decimal)):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 20:
            raise AmountError("Amount is too long")
        if not text.isascii():
            raise AmountError(f"Amount {value!r} is not a number")
    else:
        raise AmountError("Amount must be a number")
    try:
        rupees = Decimal(text)
    except InvalidOperation:
        raise AmountError(f"Amount {value!r} is not a number") from None
    if not rupees.is_finite():
        raise AmountError("Amount must be finite")
    # Checked before any arithmetic: 1e999999 would overflow the decimal context.
    if rupees.adjusted() > MAX_DIGITS:
        raise AmountError("Amount is too large")
    paisa = rupees * PAISA_PER_RUPEE
    if paisa != paisa.to_integral_value():
        raise AmountError("Amount has more than 2 decimal places")
    if paisa <= 0:
        raise AmountError("Amount must be positive")
    if paisa > max_paisa:
        raise AmountError("Amount is too large")
    return int(paisa)


def to_rupees(amount_paisa: int) -> float:
    """Rupees as a JSON float, for the fields the documents show as numbers."""
    return amount_paisa / PAISA_PER_RUPEE


def format_rupees(amount_paisa: int) -> str:
    """Rupees as the documents' strings: "1695.00"."""
    sign = "-" if amount_paisa < 0 else ""
    whole, part = divmod(abs(amount_paisa), PAISA_PER_RUPEE)
    return f"{sign}{whole}.{part:02d}"
