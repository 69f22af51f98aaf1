"""Prometheus metrics. Per process: with several workers, each scrape sees the worker that
answered it, so scrape each process (or sum across them) for totals."""

from __future__ import annotations

from functools import cache

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from bhuktani.providers.breaker import CLOSED, Breakers

PAYMENTS = Counter(
    "bhuktani_payments",
    "Commit answers by environment, service and state",
    ["env", "service", "state"],
)
RECONCILED = Counter(
    "bhuktani_reconciled", "Status questions the reconciler asked, by answer", ["answer"]
)
CALLBACK_ATTEMPTS = Counter(
    "bhuktani_callback_attempts", "Callback delivery attempts by outcome", ["outcome"]
)
ISP_DEGRADED = Gauge("bhuktani_isp_degraded", "1 while a LIVE ISP's breaker is not closed", ["isp"])
ISP_TRIPS = Gauge("bhuktani_isp_breaker_trips", "Times a LIVE ISP's breaker opened", ["isp"])

CONTENT_TYPE = CONTENT_TYPE_LATEST


@cache
def payment_answers(env: str, service: str, state: str) -> Counter:
    """The commit-answer counter of these labels, resolved once (labels() takes a lock and
    validates the names on each call, on the hot path of every commit)."""
    return PAYMENTS.labels(env=env, service=service, state=state)


def render(breakers: Breakers) -> bytes:
    for isp, state in breakers.snapshot().items():
        ISP_DEGRADED.labels(isp=isp).set(0 if state["state"] == CLOSED else 1)
        trips = state["trips"]
        assert isinstance(trips, int)
        ISP_TRIPS.labels(isp=isp).set(trips)
    return generate_latest()
