"""A circuit breaker per LIVE ISP: after repeated upstream failures the ISP is degraded and
new look-ups and payments fail fast (1018) before any money is held, until a probe (one
request let through after the cool-down, or a reconciler's status question) succeeds.

State is per process: each process learns of an ISP's failures from its own calls, which
costs at most `failure_threshold` slow calls per process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


@dataclass
class Breaker:
    failure_threshold: int
    cooldown_s: float
    state: str = CLOSED
    failures: int = 0
    opened_at_s: float = 0.0
    probing: bool = False
    probe_started_s: float = 0.0
    trips: int = 0

    def allow(self) -> bool:
        """Whether a new look-up or payment may go to the ISP now."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN and time.monotonic() - self.opened_at_s >= self.cooldown_s:
            self.state = HALF_OPEN
            self.probing = False
        if self.state != HALF_OPEN:
            return False
        now = time.monotonic()
        # One probe at a time; a probe that never reached the ISP (refused before the call)
        # gives way to another after a cool-down, so the breaker cannot stick half-open.
        if self.probing and now - self.probe_started_s < self.cooldown_s:
            return False
        self.probing = True
        self.probe_started_s = now
        return True

    def succeeded(self) -> None:
        self.state = CLOSED
        self.failures = 0
        self.probing = False

    def failed(self) -> None:
        self.failures += 1
        self.probing = False
        if self.state == HALF_OPEN or self.failures >= self.failure_threshold:
            if self.state != OPEN:
                self.trips += 1
            self.state = OPEN
            self.opened_at_s = time.monotonic()


@dataclass
class Breakers:
    failure_threshold: int
    cooldown_s: float
    by_isp: dict[str, Breaker] = field(default_factory=dict)

    def of(self, isp: str) -> Breaker:
        breaker = self.by_isp.get(isp)
        if breaker is None:
            breaker = Breaker(self.failure_threshold, self.cooldown_s)
            self.by_isp[isp] = breaker
        return breaker

    def degraded(self) -> dict[str, tuple[bool, int]]:
        """Each ISP's breaker as the metrics show it: whether it is not closed, its trips."""
        return {isp: (b.state != CLOSED, b.trips) for isp, b in sorted(self.by_isp.items())}

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {
            isp: {"state": b.state, "failures": b.failures, "trips": b.trips}
            for isp, b in sorted(self.by_isp.items())
        }
