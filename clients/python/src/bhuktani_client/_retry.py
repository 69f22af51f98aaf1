"""When a call is sent again, and after how long: one policy for Client and AsyncClient.

A lost answer (no connection, a timeout, a broken connection, a proxy's 5xx) is retried
for reads and for payments, a payment with the same body; a call that is not idempotent
only when the connection was refused, so it surely never arrived. A refusal of the gateway
is final, except 1022, which did nothing and names its wait (Retry-After)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import httpx

from bhuktani_client._calls import Call, Kind, is_lost, refusal, retry_after_s
from bhuktani_client.errors import RateLimited, TransportError, UnreadableResponse


@dataclass(frozen=True)
class RetryPolicy:
    # Attempts after the first, for lost answers and 1022 together.
    retries: int = 2
    # The first wait after a lost answer; doubled each time, up to max_backoff_s.
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    # A 1022 asking for a longer wait than this is raised, not slept through.
    max_retry_after_s: float = 30.0

    def __post_init__(self) -> None:
        assert self.retries >= 0, "retries is a count"
        assert self.backoff_s >= 0, "backoff_s is a duration"
        assert self.max_backoff_s >= self.backoff_s, "max_backoff_s bounds backoff_s"


class Attempts:
    """The attempts of one call: after each, the wait before the next, or the end."""

    def __init__(self, call: Call[Any], policy: RetryPolicy) -> None:
        self.call = call
        self.policy = policy
        self.made = 0
        # True once an attempt's answer was lost: a later 1013 is our own first attempt.
        self.answer_lost = False

    def _backoff_s(self) -> float:
        wait: float = min(self.policy.max_backoff_s, self.policy.backoff_s * 2.0 ** (self.made - 1))
        # Half to all of it, so that many clients that lost the same answer do not return
        # together.
        return wait * (0.5 + random.random() / 2)

    def after_error(self, error: httpx.TransportError) -> float:
        """The wait before trying again after a transport error; raises TransportError
        when there is no next attempt."""
        self.made += 1
        never_sent = isinstance(error, httpx.ConnectError)
        retriable = never_sent or self.call.kind is not Kind.ONCE
        if not never_sent:
            self.answer_lost = True
        if not retriable or self.made > self.policy.retries:
            raise TransportError(
                f"{self.call.method} {self.call.path}: {type(error).__name__}: {error}",
                reference=self.call.reference,
            ) from error
        return self._backoff_s()

    def after_response(self, response: httpx.Response) -> float | None:
        """None when this answer is the call's; else the wait before trying again.
        Raises when it is a lost answer and no attempt is left."""
        self.made += 1
        last = self.made > self.policy.retries
        if is_lost(response):
            self.answer_lost = True
            if last or self.call.kind is Kind.ONCE:
                raise UnreadableResponse(
                    response.status_code, response.text[:500], reference=self.call.reference
                )
            return self._backoff_s()
        if response.status_code == 429 and not last:
            error = refusal(response)
            wait_s = retry_after_s(response)
            if isinstance(error, RateLimited) and wait_s <= self.policy.max_retry_after_s:
                return wait_s
        return None
