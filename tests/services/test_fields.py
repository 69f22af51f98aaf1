"""The service groups' request models under arbitrary input: a body either parses to a
valid query or is refused with a documented validation code, never anything else; the
documents' loose spellings all mean the same query; references are exactly the
documented alphabet and length."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bhuktani import money
from bhuktani.api.errors import body_of, code_of, status_of
from bhuktani.errors import Refusal
from bhuktani.services import arrownet, hashcnet_v2
from bhuktani.services.arrownet import DURATIONS_MONTHS, Arrownet
from bhuktani.services.base import CommitQuery, DetailsQuery
from bhuktani.services.fields import MAX_ID
from bhuktani.services.hashcnet_v2 import HashcnetV2

REFERENCE = re.compile(r"[A-Za-z0-9_.:-]{1,50}")
VALIDATION_CODES = {"1010", "1012"}

Parser = Callable[[dict[str, Any]], DetailsQuery | CommitQuery]
PARSERS: dict[str, Parser] = {
    "hashcnet-v2 details": HashcnetV2().parse_details,
    "hashcnet-v2 commit": HashcnetV2().parse_commit,
    "arrownet details": Arrownet().parse_details,
    "arrownet commit": Arrownet().parse_commit,
}
FIELDS: dict[str, tuple[str, ...]] = {
    "hashcnet-v2 details": ("token", "reference", "username", "service_slug"),
    "hashcnet-v2 commit": (
        "token",
        "reference",
        "session_id",
        "package_code",
        "duration_code",
        "amount",
    ),
    "arrownet details": ("token", "username", "reference"),
    "arrownet commit": ("token", "username", "amount", "duration", "reference"),
}

# The documents' examples, each in its own spelling (keys with spaces, numbers as strings).
VALID_BODIES: dict[str, dict[str, Any]] = {
    "hashcnet-v2 details": {"reference": "d-1", "username": "sanjay", "service_slug": "vns"},
    "hashcnet-v2 commit": {
        "reference": "p-1",
        "session id": 6466,
        "package code": "9",
        "duration code": "1",
        "amount": 999.0,
    },
    "arrownet details": {"username": "sanjay", "reference": "a-1"},
    "arrownet commit": {
        "reference": "a-2",
        "username": "sanjay",
        "amount": "1695.00",
        "duration": 1,
    },
}


def valid_bodies_example(name: str) -> dict[str, Any]:
    return dict(VALID_BODIES[name])


# What parse_object hands the models: JSON values, floats read as Decimal. Python floats
# are included too, for callers that build bodies in code.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=60),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

valid_references = st.from_regex(REFERENCE, fullmatch=True)
# Around the edges of the reference rule: one character too many, a trailing newline.
edge_references = st.tuples(
    valid_references, st.sampled_from(["", "\n", " ", "x" * 50, "\x00"])
).map("".join)
# JSON allows any exponent; parse_object keeps it exactly in a Decimal.
extreme_decimals = st.builds(
    lambda mantissa, exponent: Decimal(f"{mantissa}E{exponent}"),
    st.integers(-999, 999),
    st.integers(-1_000_100, 1_000_100),
)
digit_strings = st.from_regex(r"\A\s?-?[0-9]{1,22}\s?\Z", fullmatch=True)
amount_strings = st.from_regex(
    r"\A\s?[+-]?[0-9]{0,9}(\.[0-9]{0,3})?([eE][+-]?[0-9]{1,7})?\s?\Z", fullmatch=True
)
# Values near the valid ones, per field, so that the acceptance path is exercised too.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "token": st.one_of(st.none(), st.text(max_size=210)),
    "reference": st.one_of(valid_references, edge_references, st.text(max_size=55)),
    "username": st.one_of(st.text(max_size=110), st.sampled_from(["sanjay", " sanjay ", ""])),
    "service_slug": st.one_of(st.sampled_from(hashcnet_v2.ISPS), st.text(max_size=20)),
    "session_id": st.one_of(st.integers(-5, 2**64), digit_strings),
    "package_code": st.one_of(st.integers(-5, 2**64), digit_strings),
    "duration_code": st.one_of(
        st.sampled_from(["1", "3", "12", "custom_2", " 1 ", ""]),
        st.integers(-2, 40),
        st.text(max_size=40),
    ),
    "amount": st.one_of(
        amount_strings,
        st.integers(-10, 10**12),
        st.decimals(allow_nan=False, allow_infinity=False),
        extreme_decimals,
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    "duration": st.one_of(st.sampled_from(DURATIONS_MONTHS), digit_strings, st.integers(-2, 40)),
}
SPELLINGS = {
    "session_id": ["session_id", "session id", " session id "],
    "package_code": ["package_code", "package code"],
    "duration_code": ["duration_code", "duration code"],
    "service_slug": ["service_slug", "service slug"],
}


def normalised(data: dict[str, Any]) -> dict[str, Any]:
    """The body as the documents' key rule reads it: spaces are underscores."""
    return {key.strip().replace(" ", "_"): value for key, value in data.items()}


@st.composite
def bodies_of_field_names(draw: st.DrawFn, name: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for field in FIELDS[name]:
        if draw(st.booleans()):
            key = draw(st.sampled_from(SPELLINGS.get(field, [field])))
            data[key] = draw(st.one_of(json_values, PLAUSIBLE[field]))
    data.update(draw(st.dictionaries(st.text(max_size=12), json_values, max_size=2)))
    return data


def assert_error_data(error: Refusal) -> None:
    if code_of(error) == "1012":
        assert error.error_data in (None, {})
    else:
        assert error.error_data, "a 1010 names the fields at fault"
    error_data = error.error_data or {}
    assert isinstance(error_data, dict)
    for field, messages in error_data.items():
        assert isinstance(field, str)
        assert isinstance(messages, list)
        assert messages, field
        assert all(isinstance(m, str) and m for m in messages), messages
    assert status_of(error) == 400
    orjson.dumps(body_of(error))


def assert_valid_query(name: str, query: DetailsQuery | CommitQuery, data: dict[str, Any]) -> None:
    sent = normalised(data)
    if query.reference is not None or name != "arrownet details":
        assert isinstance(query.reference, str)
        assert REFERENCE.fullmatch(query.reference), query.reference
        # A reference is an exact key: the one sent, never an edited one.
        assert query.reference == sent["reference"]
    else:
        assert sent.get("reference") is None
    if isinstance(query, DetailsQuery):
        assert isinstance(query.username, str)
        assert 1 <= len(query.username) <= 100
        if name == "hashcnet-v2 details":
            assert query.isp in hashcnet_v2.ISPS
        else:
            assert query.isp == arrownet.SLUG
        return
    assert type(query.amount_paisa) is int
    assert 0 < query.amount_paisa <= money.MAX_AMOUNT_PAISA
    assert query.amount_paisa == money.to_paisa(sent["amount"])
    assert isinstance(query.duration_code, str)
    assert 1 <= len(query.duration_code) <= 32
    if name == "hashcnet-v2 commit":
        for value in (query.session_id, query.package_code):
            assert type(value) is int
            assert 0 <= value <= MAX_ID
        assert query.isp is None and query.username is None
    else:
        assert query.duration_code in {str(d) for d in DURATIONS_MONTHS}
        assert query.isp == arrownet.SLUG
        assert isinstance(query.username, str) and 1 <= len(query.username) <= 100
        assert query.session_id is None and query.package_code is None


def parses_or_refuses(name: str, data: dict[str, Any]) -> None:
    try:
        query = PARSERS[name](data)
    except Refusal as error:
        assert code_of(error) in VALIDATION_CODES, error
        assert_error_data(error)
        return
    assert_valid_query(name, query, data)


LIMITS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", PARSERS)
@settings(LIMITS, max_examples=100)
@given(data=st.dictionaries(st.text(max_size=15), json_values, max_size=6))
def test_any_json_object_parses_or_is_a_validation_error(name: str, data: dict[str, Any]) -> None:
    parses_or_refuses(name, data)


@pytest.mark.parametrize("name", PARSERS)
@LIMITS
@given(st.data())
def test_bodies_of_the_real_field_names_parse_or_are_validation_errors(
    name: str, data: st.DataObject
) -> None:
    parses_or_refuses(name, data.draw(bodies_of_field_names(name)))


@pytest.mark.parametrize("name", ["hashcnet-v2 commit", "arrownet commit"])
@pytest.mark.parametrize("amount", [Decimal("1E+999999"), "1e999999", Decimal("-1E+999999")])
def test_an_amount_beyond_the_decimal_context_is_a_validation_error(name: str, amount: Any) -> None:
    # JSON allows the number 1e999999; parse_object reads it as Decimal("1E+999999").
    body = valid_bodies_example(name) | {"amount": amount}
    with pytest.raises(Refusal) as raised:
        PARSERS[name](body)
    assert code_of(raised.value) == "1010"
    assert set(raised.value.error_data or {}) == {"amount"}


# Every documented spelling of one valid request parses to the same query ---------------

TOKENS = st.one_of(st.none(), st.just("TEST:abc"), st.text(max_size=20))
EXTRAS = st.dictionaries(st.sampled_from(["extra", "callback", "remarks", "x y"]), json_values)
durations_codes = st.one_of(
    st.sampled_from(["1", "3", "6", "12", "custom_1", "custom_2"]),
    st.integers(0, 10**6).map(str),
    st.from_regex(r"\A[a-z][a-z0-9_]{0,31}\Z", fullmatch=True),
)
usernames = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Zs", "Cc", "Zl", "Zp"]),
    min_size=1,
    max_size=100,
)


@st.composite
def amount_spellings(draw: st.DrawFn, amount_paisa: int) -> Any:
    """The ways a client writes one amount: JSON numbers (Decimal after parse_object, or a
    Python number) and strings, with 0 to 2 decimals as the value allows."""
    rupees = Decimal(amount_paisa).scaleb(-2)
    places = [p for p in (0, 1, 2) if amount_paisa % 10 ** (2 - p) == 0]
    written = rupees.quantize(Decimal(1).scaleb(-draw(st.sampled_from(places))))
    choices: list[Any] = [written, str(written), money.format_rupees(amount_paisa)]
    choices.append(float(rupees))
    if amount_paisa % 100 == 0:
        choices.append(amount_paisa // 100)
    return draw(st.sampled_from(choices))


def spell_key(draw: st.DrawFn, field: str) -> str:
    return draw(st.sampled_from(SPELLINGS.get(field, [field])))


def spell_int(draw: st.DrawFn, value: int) -> Any:
    return draw(st.sampled_from([value, str(value)]))


def spell_code(draw: st.DrawFn, code: str) -> Any:
    spellings: list[Any] = [code]
    if code.isascii() and code.isdigit() and str(int(code)) == code:
        spellings.append(int(code))
    return draw(st.sampled_from(spellings))


@st.composite
def spelled_requests(draw: st.DrawFn, name: str) -> tuple[dict[str, Any], Any]:
    """A valid request written in a random documented spelling, and its query."""
    reference = draw(valid_references)
    body: dict[str, Any] = draw(EXTRAS)
    token = draw(TOKENS)
    if token is not None or draw(st.booleans()):
        body["token"] = token
    expected: Any
    if name == "hashcnet-v2 details":
        username, isp = draw(usernames), draw(st.sampled_from(hashcnet_v2.ISPS))
        body |= {"reference": reference, "username": username, spell_key(draw, "service_slug"): isp}
        expected = DetailsQuery(isp=isp, username=username, reference=reference)
    elif name == "arrownet details":
        username = draw(usernames)
        body["username"] = username
        with_reference = draw(st.booleans())
        if with_reference:
            body["reference"] = reference
        expected = DetailsQuery(
            isp=arrownet.SLUG, username=username, reference=reference if with_reference else None
        )
    elif name == "hashcnet-v2 commit":
        session_id = draw(st.integers(0, MAX_ID))
        package_code = draw(st.integers(0, 10**6))
        duration_code = draw(durations_codes)
        amount_paisa = draw(st.integers(1, money.MAX_AMOUNT_PAISA))
        body |= {
            "reference": reference,
            spell_key(draw, "session_id"): spell_int(draw, session_id),
            spell_key(draw, "package_code"): spell_int(draw, package_code),
            spell_key(draw, "duration_code"): spell_code(draw, duration_code),
            "amount": draw(amount_spellings(amount_paisa)),
        }
        expected = CommitQuery(
            reference=reference,
            amount_paisa=amount_paisa,
            duration_code=duration_code,
            session_id=session_id,
            package_code=package_code,
        )
    else:
        username = draw(usernames)
        months = draw(st.sampled_from(DURATIONS_MONTHS))
        amount_paisa = draw(st.integers(1, money.MAX_AMOUNT_PAISA))
        body |= {
            "reference": reference,
            "username": username,
            "duration": spell_int(draw, months),
            "amount": draw(amount_spellings(amount_paisa)),
        }
        expected = CommitQuery(
            reference=reference,
            amount_paisa=amount_paisa,
            duration_code=str(months),
            isp=arrownet.SLUG,
            username=username,
        )
    return body, expected


@pytest.mark.parametrize("name", PARSERS)
@LIMITS
@given(st.data())
def test_every_documented_spelling_parses_to_the_same_query(name: str, data: st.DataObject) -> None:
    body, expected = data.draw(spelled_requests(name))
    assert PARSERS[name](body) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "hashcnet-v2 commit",
            CommitQuery(
                reference="p-1",
                amount_paisa=99900,
                duration_code="1",
                session_id=6466,
                package_code=9,
            ),
        ),
        (
            "arrownet commit",
            CommitQuery(
                reference="a-2",
                amount_paisa=169500,
                duration_code="1",
                isp=arrownet.SLUG,
                username="sanjay",
            ),
        ),
    ],
)
def test_the_documents_own_spellings_parse(name: str, expected: CommitQuery) -> None:
    assert PARSERS[name](valid_bodies_example(name)) == expected


# References outside [A-Za-z0-9_.:-]{1,50} are refused -----------------------------------

bad_references = st.one_of(
    st.text(min_size=1, max_size=60).filter(lambda s: not REFERENCE.fullmatch(s)),
    st.from_regex(r"\A[A-Za-z0-9_.:-]{51,80}\Z", fullmatch=True),
    st.tuples(valid_references, st.sampled_from(["\n", " ", "\t", "\r\n", "/", "\x00"])).map(
        "".join
    ),
    st.tuples(st.sampled_from(["\n", " ", "\t", "#"]), valid_references).map("".join),
    st.one_of(st.integers(), st.booleans(), st.lists(st.text(), max_size=2)),
)


@pytest.mark.parametrize("name", PARSERS)
@LIMITS
@given(reference=bad_references)
@example(reference="abc\n")
@example(reference="a" * 50 + "\n")
@example(reference="a" * 51)
@example(reference="a b")
@example(reference="ref/1")
@example(reference="réf")
@example(reference=" ")
@example(reference=6466)
def test_a_reference_outside_the_documented_alphabet_is_refused(name: str, reference: Any) -> None:
    body = valid_bodies_example(name) | {"reference": reference}
    with pytest.raises(Refusal) as raised:
        PARSERS[name](body)
    assert code_of(raised.value) == "1010"
    assert "reference" in (raised.value.error_data or {})


@pytest.mark.parametrize("name", ["hashcnet-v2 details", "hashcnet-v2 commit", "arrownet commit"])
@pytest.mark.parametrize("reference", [None, "", "absent"])
def test_a_missing_reference_is_1012(name: str, reference: str | None) -> None:
    body = valid_bodies_example(name) | {"reference": reference}
    if reference == "absent":
        del body["reference"]
    with pytest.raises(Refusal) as raised:
        PARSERS[name](body)
    assert code_of(raised.value) == "1012"


@pytest.mark.parametrize("reference", ["a", "A-Z_a.z:0-9", "r" * 50, "0", "..", "::"])
@pytest.mark.parametrize("name", PARSERS)
def test_a_reference_of_the_documented_alphabet_is_kept_exactly(name: str, reference: str) -> None:
    query = PARSERS[name](valid_bodies_example(name) | {"reference": reference})
    assert query.reference == reference
