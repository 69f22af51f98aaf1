"""SingleFlight: one call per key at a time, its outcome shared by every caller; and when
a TtlCache entry is due for its refresh."""

from __future__ import annotations

import asyncio
import gc

import pytest

from bhuktani.infra.ttl_cache import SingleFlight, TtlCache

pytestmark = pytest.mark.asyncio


class Slow:
    def __init__(self, answer: str = "ok", error: Exception | None = None) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.answer = answer
        self.error = error

    async def __call__(self) -> str:
        self.calls += 1
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.answer


async def test_callers_of_one_key_share_one_call() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    call = Slow("subscriber")
    waiting = [asyncio.create_task(flight.run("k", call)) for _ in range(20)]
    await asyncio.sleep(0)
    call.release.set()
    assert await asyncio.gather(*waiting) == ["subscriber"] * 20
    assert call.calls == 1
    assert len(flight) == 0


async def test_other_keys_are_not_held_back() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    stuck, free = Slow("a"), Slow("b")
    free.release.set()
    first = asyncio.create_task(flight.run("a", stuck))
    assert await flight.run("b", free) == "b"
    assert not first.done()
    stuck.release.set()
    assert await first == "a"


async def test_a_failure_reaches_every_caller_and_the_next_call_runs_again() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    failing = Slow(error=LookupError("ISP down"))
    waiting = [asyncio.create_task(flight.run("k", failing)) for _ in range(5)]
    await asyncio.sleep(0)
    failing.release.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, LookupError) for o in outcomes)
    assert failing.calls == 1
    again = Slow("back")
    again.release.set()
    assert await flight.run("k", again) == "back"
    assert again.calls == 1


async def test_a_caller_that_goes_away_leaves_the_call_to_the_others() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    call = Slow("ok")
    leaving = asyncio.create_task(flight.run("k", call))
    staying = asyncio.create_task(flight.run("k", call))
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.sleep(0)
    call.release.set()
    assert await staying == "ok"
    assert leaving.cancelled()
    assert call.calls == 1


async def test_an_outcome_nobody_waits_for_is_not_reported_as_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    call = Slow(error=LookupError("ISP down"))
    only = asyncio.create_task(flight.run("k", call))
    await asyncio.sleep(0)
    only.cancel()
    call.release.set()
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(flight) == 0
    gc.collect()
    assert "exception was never retrieved" not in caplog.text


async def test_a_started_call_runs_with_no_caller_and_is_shared() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    call = Slow("fresh")
    started = flight.start("k", call)
    assert flight.start("k", call) is started
    waiting = asyncio.create_task(flight.run("k", call))
    await asyncio.sleep(0)
    call.release.set()
    assert await waiting == "fresh"
    assert started.result() == "fresh"
    assert call.calls == 1
    assert len(flight) == 0


async def test_an_entry_is_due_for_refresh_only_in_its_last_refresh_ahead_s() -> None:
    never: TtlCache[str, str] = TtlCache(60)
    never.put("k", "v")
    assert never.get("k") == "v"
    assert not never.refresh_due("k")
    early: TtlCache[str, str] = TtlCache(60, refresh_ahead_s=30)
    early.put("k", "v")
    assert not early.refresh_due("k"), "60 s left, refreshed in the last 30"
    due: TtlCache[str, str] = TtlCache(60, refresh_ahead_s=61)
    due.put("k", "v")
    assert due.refresh_due("k")
    assert not due.refresh_due("missing")
