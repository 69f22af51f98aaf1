"""wait() looks a payment up until it is final, waiting longer each time, and gives up
within its bounds with the last state it read."""

from __future__ import annotations

import itertools
import time
from decimal import Decimal

import httpx
import pytest
from bhuktani_client import Client, State, WaitTimeout

from tests.sdk.conftest import pay_arrownet


def test_a_processing_payment_is_waited_for_until_success(client: Client) -> None:
    paid = pay_arrownet(client, "slow-1", username="slow-user")
    assert paid.state is State.PROCESSING, paid.raw
    final = client.wait("slow-1", timeout_s=30, first_poll_s=0.1)
    assert (final.state, final.response_id) == (State.SUCCESS, paid.id)


def test_a_lost_payment_is_waited_for_until_failed_and_released(client: Client) -> None:
    before = client.balance().credits_available
    paid = pay_arrownet(client, "lost-1", username="lost-user")
    assert paid.state is State.PROCESSING
    assert client.balance().credits_available == before - Decimal("1695.00")
    final = client.wait("lost-1", timeout_s=30, first_poll_s=0.1)
    assert final.state is State.FAILED
    assert client.balance().credits_available == before


def never_final() -> tuple[Client, list[float]]:
    """A gateway whose payment stays Processing; the times it was asked."""
    asked: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(time.monotonic())
        return httpx.Response(
            200,
            json={
                "status": True,
                "state": "Processing",
                "original_status": "Processing",
                "details": "",
                "reference": "r",
                "response_id": 7,
                "amount": 100.0,
                "refunded": False,
                "refunded_amount": 0.0,
                "refunds": [],
            },
        )

    return Client("http://gateway", "TEST:t", transport=httpx.MockTransport(handler)), asked


def test_wait_gives_up_after_its_look_ups_with_the_last_state() -> None:
    client, asked = never_final()
    with client, pytest.raises(WaitTimeout) as waited:
        client.wait("r", timeout_s=60, first_poll_s=0.01, max_poll_s=0.04, max_polls=5)
    assert (waited.value.last_state, waited.value.polls, len(asked)) == ("Processing", 5, 5)
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    # Doubling: 0.01, 0.02, 0.04, then capped at 0.04.
    assert gaps[0] < gaps[2] and all(gap < 0.5 for gap in gaps)


def test_wait_gives_up_after_its_time() -> None:
    client, asked = never_final()
    started = time.monotonic()
    with client, pytest.raises(WaitTimeout) as waited:
        client.wait("r", timeout_s=0.3, first_poll_s=0.05, max_poll_s=0.1, max_polls=1000)
    assert 0.3 <= time.monotonic() - started < 1.0
    assert waited.value.last_state == "Processing" and 3 <= len(asked) < 10
