"""FairGate: the PostgreSQL statements' queue for a connection, first come first served."""

from __future__ import annotations

import asyncio

import pytest

from bhuktani.infra.gate import FairGate

pytestmark = pytest.mark.asyncio


async def settle() -> None:
    """Let every task that can run, run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def take(gate: FairGate, name: str, got: list[str]) -> None:
    await gate.acquire()
    got.append(name)


async def test_a_released_place_goes_to_the_longest_waiter_not_to_a_newcomer() -> None:
    """asyncio.Queue, under asyncpg's pool, lets a task that asks between the release and
    the woken waiter's turn take the connection, and sends the waiter to the back."""
    gate = FairGate(1)
    await gate.acquire()
    got: list[str] = []
    waiters = [asyncio.create_task(take(gate, name, got)) for name in ("first", "second")]
    await settle()
    # The newcomer's first step is due before the wake-up that the release queues for
    # "first": it asks for the place in between, as a new request does under load.
    newcomer = asyncio.create_task(take(gate, "newcomer", got))
    gate.release()
    await settle()
    assert got == ["first"]
    gate.release()
    await settle()
    gate.release()
    await settle()
    assert got == ["first", "second", "newcomer"]
    await asyncio.gather(*waiters, newcomer)


async def test_no_more_holders_than_places() -> None:
    gate = FairGate(2)
    got: list[str] = []
    tasks = [asyncio.create_task(take(gate, str(i), got)) for i in range(5)]
    await settle()
    assert got == ["0", "1"]
    gate.release()
    await settle()
    assert got == ["0", "1", "2"]
    for _ in range(2):
        gate.release()
    await settle()
    assert got == ["0", "1", "2", "3", "4"]
    await asyncio.gather(*tasks)


async def test_a_waiter_cancelled_in_the_queue_takes_no_place() -> None:
    gate = FairGate(1)
    await gate.acquire()
    got: list[str] = []
    gone = asyncio.create_task(take(gate, "gone", got))
    await settle()
    gone.cancel()
    await settle()
    gate.release()
    await asyncio.wait_for(take(gate, "next", got), 1)
    assert got == ["next"]


async def test_a_waiter_cancelled_after_it_was_given_a_place_passes_it_on() -> None:
    """Handed the place, then cancelled before it ran (its client hung up): the place must
    go to the next waiter, or the gate would lose it for good."""
    gate = FairGate(1)
    await gate.acquire()
    got: list[str] = []
    gone = asyncio.create_task(take(gate, "gone", got))
    after = asyncio.create_task(take(gate, "after", got))
    await settle()
    gate.release()  # to "gone", which has not run since
    gone.cancel()
    await settle()
    assert gone.cancelled()
    assert got == ["after"]
    gate.release()
    await asyncio.wait_for(take(gate, "again", got), 1)  # the one place is free again
    assert got == ["after", "again"]
    await after


async def test_a_gate_needs_a_place() -> None:
    with pytest.raises(ValueError):
        FairGate(0)


async def test_only_the_waits_are_timed() -> None:
    waited: list[float] = []
    gate = FairGate(1, on_wait=waited.append)
    await gate.acquire()  # a free place: nothing to time
    got: list[str] = []
    later = asyncio.create_task(take(gate, "later", got))
    await settle()
    assert gate.waiting == 1
    await asyncio.sleep(0.05)
    gate.release()
    await later
    assert gate.waiting == 0
    assert len(waited) == 1 and 0.04 < waited[0] < 1, waited
