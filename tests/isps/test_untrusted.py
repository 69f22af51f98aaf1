"""isps.untrusted: whatever an ISP sends, what comes out can be stored, priced and
shown. Properties over any subscriber, then the rules one by one."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bhuktani.isps import untrusted
from bhuktani.isps.base import Duration, Package, Subscriber
from bhuktani.money import MAX_AMOUNT_PAISA
from bhuktani.services import arrownet, hashcnet_v2

HOSTILE_CHARS = "\x00\x07\x1b\n\t\x7f\x85\u2028\u202e\ud800\ufeff"
texts = st.text(alphabet=st.one_of(st.characters(), st.sampled_from(HOSTILE_CHARS)), max_size=300)
big_ints = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.integers(min_value=-2, max_value=400_000),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), big_ints, st.floats(allow_nan=False), texts),
    lambda inner: st.one_of(
        st.lists(inner, max_size=150), st.dictionaries(texts, inner, max_size=5)
    ),
    max_leaves=300,
)
shown_objects = st.dictionaries(
    st.one_of(texts, st.sampled_from(["stb", "vat_amount", "zone"])), json_values, max_size=5
)
durations = st.builds(
    Duration,
    code=texts,
    title=texts,
    amount_paisa=big_ints,
    days=big_ints,
    once=st.booleans(),
    shown=shown_objects,
)
packages = st.builds(
    Package, title=texts, code=big_ints, durations=st.lists(durations, max_size=4).map(tuple)
)
subscribers = st.builds(
    Subscriber,
    username=st.one_of(texts, st.just("jeetenaug4")),
    customer_id=texts,
    full_name=texts,
    current_plan=texts,
    days_remaining=big_ints,
    has_due=st.booleans(),
    accept_advance_payment=st.booleans(),
    packages=st.lists(packages, max_size=4).map(tuple),
    shown=shown_objects,
    paid=st.lists(st.one_of(texts, st.just("1613142_PP")), max_size=5).map(tuple),
)


def shown_safe(value: object, depth: int = 0) -> None:
    """A group's own fields as they may be shown: safe texts, plain keys, bounded."""
    assert depth <= untrusted.MAX_SHOWN_DEPTH
    if isinstance(value, str):
        assert len(value) <= untrusted.SHOWN_TEXT_CHARS and safe(value)
    elif isinstance(value, list):
        assert len(value) <= untrusted.MAX_SHOWN_ITEMS
        for item in value:
            shown_safe(item, depth + 1)
    elif isinstance(value, dict):
        assert len(value) <= untrusted.MAX_SHOWN_ITEMS
        for key, item in value.items():
            assert isinstance(key, str) and key.isascii() and 0 < len(key) <= 64
            shown_safe(item, depth + 1)
    else:
        assert value is None or isinstance(value, bool | int | float)


def safe(text: str) -> bool:
    return all(c.isprintable() or c in "\u200c\u200d" for c in text)


@given(subscribers)
def test_whatever_the_isp_sends_what_comes_out_fits_and_is_safe(subscriber: Subscriber) -> None:
    try:
        checked = untrusted.checked(subscriber).subscriber
    except untrusted.Unreadable:
        return
    assert checked.username == subscriber.username, "a name the ISP must know is never changed"
    assert 0 < len(checked.username) <= 100 and safe(checked.username)
    for text, limit in (
        (checked.customer_id, 64),
        (checked.full_name, 200),
        (checked.current_plan, 100),
    ):
        assert len(text) <= limit and safe(text)
    assert 0 <= checked.days_remaining <= untrusted.MAX_DAYS_REMAINING
    for package in checked.packages:
        assert 0 < len(package.title) <= 100 and safe(package.title)
        assert 0 <= package.code <= 2**53
        for duration in package.durations:
            assert 0 < duration.amount_paisa <= MAX_AMOUNT_PAISA
            assert 0 <= duration.days <= 3660
            assert duration.code.isascii() and 0 < len(duration.code) <= 32
            assert len(duration.title) <= 100 and safe(duration.title)
            shown_safe(duration.shown)
    shown_safe(checked.shown)
    assert all(code.isascii() and 0 < len(code) <= 32 for code in checked.paid)


@given(texts)
def test_any_receipt_comes_out_printable_bounded_and_not_empty(raw: str) -> None:
    made = untrusted.receipt(raw or "x")
    assert made and len(made) <= untrusted.RECEIPT_CHARS
    assert all(c.isprintable() for c in made)


def test_the_catalog_subscribers_pass_unchanged() -> None:
    for subscriber in (hashcnet_v2.SANDBOX_USER, arrownet.SANDBOX_USER):
        assert untrusted.checked(subscriber) == untrusted.Checked(subscriber, ())


@pytest.mark.parametrize(
    ("amount_paisa", "days"),
    [(-100, 30), (0, 30), (MAX_AMOUNT_PAISA + 1, 30), (2**70, 30), (100, -1), (100, 3661)],
)
def test_a_duration_that_could_not_be_sold_is_dropped(amount_paisa: int, days: int) -> None:
    bad = Duration("3", "3 Months", amount_paisa, days)
    package = arrownet.PACKAGES[0]
    offered = replace(package, durations=(*package.durations, bad))
    checked = untrusted.checked(replace(arrownet.SANDBOX_USER, packages=(offered,)))
    assert checked.subscriber == arrownet.SANDBOX_USER
    assert len(checked.dropped) == 1


@pytest.mark.parametrize(("told", "shown"), [(-5, 0), (-(2**70), 0), (2**70, 36_600), (7, 7)])
def test_days_remaining_is_clamped(told: int, shown: int) -> None:
    checked = untrusted.checked(replace(arrownet.SANDBOX_USER, days_remaining=told))
    assert checked.subscriber.days_remaining == shown


@pytest.mark.parametrize("username", ["", " Pradhanang", "Prad\x00hanang", "p" * 101, "a\u202eb"])
def test_a_username_that_is_not_clean_makes_the_subscriber_unreadable(username: str) -> None:
    with pytest.raises(untrusted.Unreadable):
        untrusted.checked(replace(arrownet.SANDBOX_USER, username=username))


def test_devanagari_names_keep_their_joiners() -> None:
    name = "क्\u200dष राम"
    checked = untrusted.checked(replace(arrownet.SANDBOX_USER, full_name=name))
    assert checked.subscriber.full_name == name


@pytest.mark.parametrize(
    ("raw", "made"),
    [
        ("R\x00X", "R\\x00X"),
        ("1234567", "1234567"),
        ("R" * 101, "R" * 99 + "…"),
        ("\x00" * 100, "\\x00" * 24 + "\\x0…"),
    ],
)
def test_receipts_are_escaped_and_cut(raw: str, made: str) -> None:
    assert untrusted.receipt(raw) == made
