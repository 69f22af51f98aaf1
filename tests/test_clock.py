"""Nepal time as the gateway writes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bhuktani.clock import NEPAL, day_start_ms, nepal_day, nepal_time

# From year 2 to 9998, in milliseconds since the epoch.
INSTANTS = st.integers(min_value=-62_100_000_000_000, max_value=253_370_000_000_000)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@given(INSTANTS)
def test_nepal_time_writes_what_datetime_writes(at_ms: int) -> None:
    # Exact where a float of seconds is not (beyond 2^53 microseconds).
    at = (EPOCH + timedelta(milliseconds=at_ms)).astimezone(NEPAL)
    assert nepal_time(at_ms) == at.isoformat(timespec="milliseconds")


def test_a_nepal_day_starts_at_quarter_past_six_utc_the_day_before() -> None:
    start_ms = day_start_ms(datetime(2026, 7, 12).date())
    assert datetime.fromtimestamp(start_ms / 1000, tz=UTC).isoformat() == (
        "2026-07-11T18:15:00+00:00"
    )
    assert nepal_time(start_ms) == "2026-07-12T00:00:00.000+05:45"
    assert nepal_time(start_ms - 1) == "2026-07-11T23:59:59.999+05:45"
    assert nepal_day(start_ms - 1).isoformat() == "2026-07-11"


def test_other_precisions_are_datetimes() -> None:
    assert nepal_time(1_765_000_000_123, timespec="seconds") == "2025-12-06T11:31:40+05:45"
