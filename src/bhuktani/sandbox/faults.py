"""What `isp-sim` does wrong, and the seeded draw of each request's fate, so that a run that
found a bug is replayed from its seed.

A payment's fate is one of: normal, refuse, 5xx, garbage, drop before applying, drop after
applying, hostile (applied, and paid with a receipt no one should store as it is).
Look-ups, status questions and repeated payments decide nothing, so the network alone can
fail them: 5xx, garbage or a dropped connection, never a refusal and never a drop
after applying. Every request drawn also gets its latency.

Each draw takes exactly two numbers from the generator, whatever it decides, so the fates
depend on the seed and the order of the requests only."""

from __future__ import annotations

import math
import random
import secrets
from collections import Counter
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

# No single answer waits longer than this, whatever the distribution draws.
MAX_LATENCY_S = 300.0
MAX_SEED = 2**63 - 1
# 0.1 + 0.2 + 0.7 comes out a hair above 1; that is still a valid set of probabilities.
_SUM_TOLERANCE = 1e-9


class Fate(StrEnum):
    NORMAL = "normal"
    REFUSE = "refuse"  # refused and recorded as refused
    ERROR_5XX = "error_5xx"  # 503, nothing applied
    GARBAGE = "garbage"  # applied, then an unreadable 200 answer
    DROP_BEFORE = "drop_before"  # the connection drops, nothing applied
    DROP_AFTER = "drop_after"  # applied, then the connection drops
    # Applied, and answered paid with a receipt carrying a NUL, control characters and a
    # bidirectional override, in that answer and in every status answer after it.
    HOSTILE = "hostile"


PAYMENT_FATES = tuple(Fate)
QUERY_FATES = (Fate.NORMAL, Fate.ERROR_5XX, Fate.GARBAGE, Fate.DROP_BEFORE)


class LatencyDist(StrEnum):
    UNIFORM = "uniform"  # latency_s plus an extra in [0, latency_jitter_s]
    EXPONENTIAL = "exponential"  # latency_s plus an extra of mean latency_jitter_s


_PROBABILITIES = (
    "refuse_p",
    "error_5xx_p",
    "garbage_p",
    "drop_before_p",
    "drop_after_p",
    "hostile_p",
)


@dataclass(frozen=True)
class Faults:
    """Fixed latency is `latency_s` with no jitter; the outcome probabilities add up to at
    most 1, the rest being normal answers."""

    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    latency_dist: LatencyDist = LatencyDist.UNIFORM
    refuse_p: float = 0.0
    error_5xx_p: float = 0.0
    garbage_p: float = 0.0
    drop_before_p: float = 0.0
    drop_after_p: float = 0.0
    hostile_p: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("latency_s", "latency_jitter_s"):
            value = _number(name, getattr(self, name))
            if not 0 <= value <= MAX_LATENCY_S:
                raise ValueError(f"{name} must be between 0 and {MAX_LATENCY_S:g}")
        for name in _PROBABILITIES:
            value = _number(name, getattr(self, name))
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.outcome_p() > 1 + _SUM_TOLERANCE:
            raise ValueError(f"{' + '.join(_PROBABILITIES)} must not exceed 1")
        if not isinstance(self.latency_dist, LatencyDist):
            raise ValueError(f"latency_dist must be one of {', '.join(LatencyDist)}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError("seed must be an integer")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be between 0 and {MAX_SEED}")

    def outcome_p(self) -> float:
        return math.fsum(getattr(self, name) for name in _PROBABILITIES)

    @classmethod
    def from_json(cls, data: Any) -> Faults:
        """Settings from a JSON object; a missing setting takes its default, a missing seed
        is a new random one (the answer shows which)."""
        if not isinstance(data, dict):
            raise ValueError("the fault settings must be a JSON object")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            # A misspelt setting silently ignored would be a run without the fault it wanted.
            raise ValueError(f"unknown settings: {', '.join(map(str, unknown))}")
        values = dict(data)
        if values.get("seed") is None:
            values["seed"] = new_seed()
        if "latency_dist" in values:
            values["latency_dist"] = _dist(values["latency_dist"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency_dist"] = self.latency_dist.value
        return data


def new_seed() -> int:
    return secrets.randbelow(1_000_000_000)


def _number(name: str, value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number")
    return value


def _dist(value: object) -> LatencyDist:
    for dist in LatencyDist:
        if value == dist.value:
            return dist
    raise ValueError(f"latency_dist must be one of {', '.join(LatencyDist)}")


@dataclass(frozen=True)
class Draw:
    fate: Fate
    delay_s: float


class FaultPlan:
    """The fates of one run: a generator seeded from the settings, and a count of what it
    has drawn. Not shared between tasks: the simulator draws without awaiting."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._random = random.Random(faults.seed)
        self.payments: Counter[Fate] = Counter()
        self.queries: Counter[Fate] = Counter()

    def payment(self) -> Draw:
        """The first request for a payment_id: any fate."""
        f = self.faults
        draw = self._draw(
            (
                (Fate.REFUSE, f.refuse_p),
                (Fate.ERROR_5XX, f.error_5xx_p),
                (Fate.GARBAGE, f.garbage_p),
                (Fate.DROP_BEFORE, f.drop_before_p),
                (Fate.DROP_AFTER, f.drop_after_p),
                (Fate.HOSTILE, f.hostile_p),
            )
        )
        self.payments[draw.fate] += 1
        return draw

    def query(self) -> Draw:
        """A look-up, a status question or a repeated payment: only the network fails it."""
        f = self.faults
        draw = self._draw(
            (
                (Fate.ERROR_5XX, f.error_5xx_p),
                (Fate.GARBAGE, f.garbage_p),
                (Fate.DROP_BEFORE, f.drop_before_p),
            )
        )
        self.queries[draw.fate] += 1
        return draw

    def stats(self) -> dict[str, Any]:
        return {
            "seed": self.faults.seed,
            "payments": {fate.value: self.payments[fate] for fate in PAYMENT_FATES},
            "queries": {fate.value: self.queries[fate] for fate in QUERY_FATES},
        }

    def _draw(self, chances: tuple[tuple[Fate, float], ...]) -> Draw:
        # Both numbers are taken before either is used, so no branch shifts the sequence.
        fate_u = self._random.random()
        latency_u = self._random.random()
        return Draw(_pick(fate_u, chances), self._latency(latency_u))

    def _latency(self, u: float) -> float:
        f = self.faults
        if f.latency_dist is LatencyDist.EXPONENTIAL:
            extra_s = -f.latency_jitter_s * math.log1p(-u)  # u < 1, so the log is finite
        else:
            extra_s = f.latency_jitter_s * u
        return min(f.latency_s + extra_s, MAX_LATENCY_S)


def _pick(u: float, chances: tuple[tuple[Fate, float], ...]) -> Fate:
    threshold = 0.0
    for fate, p in chances:
        threshold += p
        if u < threshold:
            return fate
    return Fate.NORMAL
