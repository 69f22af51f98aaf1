"""money: the one place where rupees from the wire become integer paisa, and back.

What `to_paisa` accepts, decided by reading the code and pinned here:
- JSON numbers (int, and floats as parse_object gives them: Decimal; a Python float is
  read through its shortest repr, so 999.0 is 999 rupees and 0.1 is 10 paisa);
- strings of a decimal number in ASCII digits, surrounding ASCII white space ignored, at
  most 20 characters; no `_` (Decimal() takes "99_9"), no space or other digits inside;
- exponent notation, as string or number: "1e3" and Decimal("1E+3") are 1000 rupees
  (JSON allows 1e3 as a number, so the string spelling means the same);
- trailing zeros beyond 2 places: "999.000" is 999 rupees (the value has 2 places).
Read exactly, never through a 28-digit decimal context: 998.999...9 is refused, not 999.
Everything else is an AmountError: bools, None, containers, a third decimal place that
is not zero, zero, negatives, NaN, Infinity, more than MAX_AMOUNT_PAISA, long strings.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bhuktani.money import (
    MAX_AMOUNT_PAISA,
    PAISA_PER_RUPEE,
    AmountError,
    format_rupees,
    to_paisa,
    to_rupees,
)

CENT = Decimal("0.01")
MAX_RUPEES = Decimal(MAX_AMOUNT_PAISA) / PAISA_PER_RUPEE


@pytest.mark.parametrize(
    ("value", "paisa"),
    [
        (999, 99900),
        (999.0, 99900),
        ("999.00", 99900),
        ("999", 99900),
        ("999.0", 99900),
        (Decimal("1695.00"), 169500),
        (Decimal("999.0"), 99900),
        ("0.01", 1),
        (0.01, 1),
        (0.1, 10),
        ("  1695.00 ", 169500),
        ("1e3", 100000),
        (Decimal("1E+3"), 100000),
        ("999.000", 99900),
        (MAX_RUPEES, MAX_AMOUNT_PAISA),
        (str(MAX_RUPEES), MAX_AMOUNT_PAISA),
        (int(MAX_RUPEES), MAX_AMOUNT_PAISA),
    ],
)
def test_an_amount_in_any_documented_spelling_is_read_as_paisa(value: object, paisa: int) -> None:
    result = to_paisa(value)
    assert result == paisa
    assert type(result) is int


@pytest.mark.parametrize(
    "value",
    [
        "0.001",
        "999.001",
        Decimal("1.005"),
        1.005,
        0.1 + 0.2,  # 0.30000000000000004: a float that is not a 2-place amount
    ],
)
def test_a_third_decimal_place_is_refused(value: object) -> None:
    with pytest.raises(AmountError, match="2 decimal places"):
        to_paisa(value)


@pytest.mark.parametrize(
    "value", [0, 0.0, "0", "0.00", Decimal(0), "-0", -1, -0.01, "-999.00", Decimal("-1695")]
)
def test_zero_and_negative_amounts_are_refused(value: object) -> None:
    with pytest.raises(AmountError, match="positive"):
        to_paisa(value)


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "inf",
        Decimal("NaN"),
        Decimal("Infinity"),
    ],
)
def test_nan_and_infinity_are_refused(value: object) -> None:
    with pytest.raises(AmountError):
        to_paisa(value)


@pytest.mark.parametrize("value", [True, False, None, [], {}, [999], {"amount": 999}, b"999"])
def test_values_that_are_not_numbers_are_refused(value: object) -> None:
    with pytest.raises(AmountError, match="must be a number"):
        to_paisa(value)


@pytest.mark.parametrize(
    "value",
    [
        MAX_AMOUNT_PAISA // PAISA_PER_RUPEE + 1,
        str(MAX_RUPEES + CENT),
        MAX_RUPEES + CENT,
        10**30,
        1e22,
        "1e20",
        Decimal("1E+100"),
    ],
)
def test_amounts_above_the_maximum_are_refused(value: object) -> None:
    with pytest.raises(AmountError, match="too large"):
        to_paisa(value)


@pytest.mark.parametrize(
    "value",
    [
        # JSON allows 1e999999 as a number (parse_object reads it as this Decimal); the
        # string is 8 characters. Both must be refused, not overflow the decimal context.
        "1e999999",
        Decimal("1E+999999"),
        "9e9999999",
    ],
)
def test_an_exponent_beyond_the_decimal_context_is_refused_as_too_large(value: object) -> None:
    with pytest.raises(AmountError):
        to_paisa(value)


def test_an_integer_too_long_to_print_is_refused_as_an_amount() -> None:
    # Beyond Python's int-to-str digit limit (4300): still an amount error, not a crash.
    with pytest.raises(AmountError):
        to_paisa(10**5000)


@pytest.mark.parametrize(
    "value", ["", "   ", "abc", "9 99", "1,000.00", "Rs 999", "999.00.00", "0x10", "--1", "1e"]
)
def test_strings_that_are_not_decimal_numbers_are_refused(value: str) -> None:
    with pytest.raises(AmountError):
        to_paisa(value)


@pytest.mark.parametrize(
    "value", ["1" * 21, "0" * 20 + "1", "1." + "0" * 19, " " * 5 + "1" * 21, "9" * 1000]
)
def test_strings_longer_than_20_characters_are_refused(value: str) -> None:
    with pytest.raises(AmountError, match="too long"):
        to_paisa(value)


def test_a_20_character_string_is_still_read() -> None:
    text = "0" * 16 + "1.00"
    assert len(text) == 20
    assert to_paisa(text) == 100


@pytest.mark.parametrize(
    ("paisa", "text"),
    [
        (169500, "1695.00"),
        (99900, "999.00"),
        (1, "0.01"),
        (10, "0.10"),
        (0, "0.00"),
        (-150, "-1.50"),
        (-1, "-0.01"),
        (MAX_AMOUNT_PAISA, "10000000.00"),
    ],
)
def test_format_rupees_writes_the_documents_two_decimal_strings(paisa: int, text: str) -> None:
    assert format_rupees(paisa) == text


@pytest.mark.parametrize(
    ("paisa", "rupees"), [(99900, 999.0), (169500, 1695.0), (1, 0.01), (0, 0.0), (12345, 123.45)]
)
def test_to_rupees_is_a_json_float(paisa: int, rupees: float) -> None:
    result = to_rupees(paisa)
    assert type(result) is float
    assert result == rupees


# Properties ----------------------------------------------------------------------------

paisa_in_range = st.integers(min_value=1, max_value=MAX_AMOUNT_PAISA)


@st.composite
def rupee_decimals(draw: st.DrawFn) -> Decimal:
    """A Decimal of at most 2 places, in range, written with 0, 1 or 2 places."""
    paisa = draw(paisa_in_range)
    places = draw(st.sampled_from([p for p in (0, 1, 2) if paisa % 10 ** (2 - p) == 0]))
    return Decimal(paisa).scaleb(-2).quantize(Decimal(1).scaleb(-places))


@given(rupee_decimals())
@example(Decimal("999"))
@example(Decimal("0.01"))
@example(MAX_RUPEES)
def test_format_rupees_round_trips_any_two_place_decimal(rupees: Decimal) -> None:
    expected = str(rupees.quantize(CENT))
    assert format_rupees(to_paisa(rupees)) == expected
    assert format_rupees(to_paisa(str(rupees))) == expected
    assert format_rupees(to_paisa(float(rupees))) == expected
    if rupees == rupees.to_integral_value():
        assert format_rupees(to_paisa(int(rupees))) == expected


@given(paisa_in_range)
def test_paisa_survive_the_trip_through_the_wire_spellings(paisa: int) -> None:
    assert to_paisa(format_rupees(paisa)) == paisa
    # The JSON floats we answer with come back as the same paisa.
    assert to_paisa(to_rupees(paisa)) == paisa
    assert to_rupees(paisa) == float(format_rupees(paisa))


json_numbers = st.one_of(
    st.integers(),
    st.floats(),
    st.decimals(),
    st.booleans(),
    st.none(),
)
numeric_strings = st.from_regex(
    r"\A\s{0,2}[+-]?\d{0,12}(\.\d{0,4})?([eE][+-]?\d{1,8})?\s{0,2}\Z", fullmatch=True
)
anything = st.one_of(
    json_numbers,
    numeric_strings,
    st.text(max_size=30),
    st.lists(st.integers(), max_size=2),
)


@given(anything)
@example("1e999999")
@example(Decimal("1E+999999"))
@example("1e-999999")
@example("-0.00")
def test_to_paisa_returns_a_positive_bounded_int_or_refuses(value: Any) -> None:
    try:
        paisa = to_paisa(value)
    except AmountError:
        return
    assert type(paisa) is int
    assert paisa > 0
    assert paisa <= MAX_AMOUNT_PAISA


# Strict reading: no rounding by a decimal context, ASCII digits only ------------------

# Digits of other scripts that str.isdigit() and Decimal() take: full-width, Arabic-Indic,
# Devanagari, superscripts.
OTHER_DIGITS = st.sampled_from("０１９٠٢٩०१९¹²³")


@given(
    st.text(alphabet="0123456789._eE+-", max_size=8), st.text(alphabet="0123456789.", max_size=8)
)
@example("99", "9")
@example("1", "695.00")
def test_any_string_with_an_underscore_is_refused(left: str, right: str) -> None:
    with pytest.raises(AmountError):
        to_paisa(f"{left}_{right}")


@given(
    st.text(alphabet="0123456789.", max_size=8),
    OTHER_DIGITS,
    st.text(alphabet="0123456789.", max_size=8),
)
@example("1695.0", "٠", "")
@example("", "１", "")
def test_any_string_with_a_digit_that_is_not_ascii_is_refused(
    left: str, digit: str, right: str
) -> None:
    with pytest.raises(AmountError):
        to_paisa(left + digit + right)


@given(st.text(alphabet="0123456789", min_size=1, max_size=6), st.sampled_from(" \t\u00a0\u2003"))
def test_space_inside_an_amount_is_refused(digits: str, space: str) -> None:
    with pytest.raises(AmountError):
        to_paisa(digits[:1] + space + digits[1:] + "1")


@given(
    st.integers(min_value=1, max_value=MAX_AMOUNT_PAISA),
    st.integers(min_value=1, max_value=60),
    st.integers(min_value=1, max_value=9),
)
@example(99_900 - 1, 37, 9)  # 998.99 followed by 37 nines: 998.9999...9, never 999.00
@example(99_900, 37, 1)  # 999.00 and a 1 in the 39th place
def test_a_long_precision_number_is_never_rounded(paisa: int, zeros: int, last: int) -> None:
    """A third decimal place refuses the amount however far out it is, as a JSON number
    (the Decimal parse_object makes) or as a string; a 28-digit context would round it."""
    text = format_rupees(paisa) + "0" * zeros + str(last)
    with pytest.raises(AmountError, match="2 decimal places"):
        to_paisa(Decimal(text))
    if len(text) <= 20:
        with pytest.raises(AmountError, match="2 decimal places"):
            to_paisa(text)


@given(st.integers(min_value=1, max_value=MAX_AMOUNT_PAISA), st.integers(min_value=0, max_value=80))
def test_trailing_zeros_of_any_length_keep_the_amount_exact(paisa: int, zeros: int) -> None:
    assert to_paisa(Decimal(format_rupees(paisa) + "0" * zeros)) == paisa


@given(paisa_in_range)
@example(99_900)
@example(MAX_AMOUNT_PAISA)
def test_any_two_place_amount_in_exponent_spelling_round_trips_exactly(paisa: int) -> None:
    # 999.00 as the digits of its paisa and an exponent: 99900e-2, 9990.0e-1.
    for text in (f"{paisa}e-2", f"{paisa}.0E-2", f"{paisa * 10}e-3"):
        assert to_paisa(Decimal(text)) == paisa
        assert to_paisa(text) == paisa
