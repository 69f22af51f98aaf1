"""What an operator sees when a limit trips: a counter of every refusal, and one log line
per bucket per interval, not one per refused request (a burst of 5,000 would flood the log).
The line says how many requests that bucket refused since its last line."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import structlog

from bhuktani import metrics
from bhuktani.ratelimit.bucket import Clock

LOG_EVERY_S = 60.0
MAX_KEYS = 10_000

log = structlog.get_logger()


class Trips:
    def __init__(self, *, clock: Clock, every_s: float = LOG_EVERY_S) -> None:
        self._clock = clock
        self._every_s = every_s
        # (reason, key) -> (when last logged, refusals since)
        self._seen: OrderedDict[tuple[str, Hashable], tuple[float, int]] = OrderedDict()

    def refused(self, reason: str, key: Hashable, **fields: Any) -> None:
        metrics.rate_limited(reason).inc()
        now_s = self._clock()
        seen_key = (reason, key)
        logged_s, since = self._seen.get(seen_key, (None, 0))
        if logged_s is not None and now_s - logged_s < self._every_s:
            self._seen[seen_key] = (logged_s, since + 1)
            return
        log.warning("rate_limited", reason=reason, refused=since + 1, **fields)
        self._seen[seen_key] = (now_s, 0)
        self._seen.move_to_end(seen_key)
        while len(self._seen) > MAX_KEYS:
            self._seen.popitem(last=False)
