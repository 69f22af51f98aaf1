"""Prometheus metrics. Per process: with several workers, each scrape sees the worker that
answered it, so scrape each process (or sum across them) for totals."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

PAYMENTS = Counter(
    "bhuktani_payments",
    "Commit answers by environment, service and state",
    ["env", "service", "state"],
)
RECONCILED = Counter(
    "bhuktani_reconciled", "Status questions the reconciler asked, by answer", ["answer"]
)
# Reconciler rounds that could not finish a payment: kind is "unreadable" (the ISP's answer)
# or "error" (our own write failed); each one is logged too, and repeated ones flag it.
RECONCILE_FAILURES = Counter(
    "bhuktani_reconcile_failures", "Reconciler rounds that failed for a payment, by kind", ["kind"]
)
CALLBACK_ATTEMPTS = Counter(
    "bhuktani_callback_attempts", "Callback delivery attempts by outcome", ["outcome"]
)
SESSIONS_DELETED = Counter(
    "bhuktani_sessions_deleted", "Expired sessions that no payment spent, deleted by the sweeper"
)
ISP_DEGRADED = Gauge("bhuktani_isp_degraded", "1 while a LIVE ISP's breaker is not closed", ["isp"])
ISP_TRIPS = Gauge("bhuktani_isp_breaker_trips", "Times a LIVE ISP's breaker opened", ["isp"])
# How long a LIVE ISP takes, from asking for a pooled connection to the answer's last byte.
# outcome: the answer's status class (2xx, 4xx, 5xx ...), timeout, no_answer, cancelled
# (the caller's own deadline came first), or error (a fault of ours).
ISP_HTTP_SECONDS = Histogram(
    "bhuktani_isp_http_seconds",
    "LIVE ISP exchanges by service group, ISP, call and outcome",
    ["group", "isp", "call", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
)

# PostgreSQL statements that found every connection of the process's pool taken: how many
# wait now, and how long each waited. Statements that found one free are not counted.
DB_WAITING = Gauge(
    "bhuktani_db_statements_waiting", "PostgreSQL statements waiting for a connection now"
)
DB_WAIT_SECONDS = Histogram(
    "bhuktani_db_connection_wait_seconds",
    "How long PostgreSQL statements that found the pool busy waited for a connection",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# LIVE ISP calls that found every connection to their ISP busy
# (BHUKTANI_ISP_MAX_CONNECTIONS), waiting now; their wait is inside bhuktani_isp_http_seconds.
ISP_WAITING = Gauge(
    "bhuktani_isp_calls_waiting",
    "LIVE ISP calls waiting for a connection now, by service group",
    ["group"],
)

# Requests refused with 1022: reason "merchant" (the merchant's request rate) or "auth"
# (the client address's failed authentications).
RATE_LIMITED = Counter(
    "bhuktani_rate_limited", "Requests refused by a rate limit, by reason", ["reason"]
)

# The last settlement with each LIVE ISP (books/settlement.py): its ours-only, theirs-only
# and amount mismatches together; 0 when the ISP's report and our books agreed.
SETTLEMENT_MISMATCHES = Gauge(
    "bhuktani_settlement_mismatches",
    "Mismatches in the last settlement of a day with each LIVE ISP",
    ["isp"],
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


@cache
def payment_answers(env: str, service: str, state: str) -> Counter:
    """The commit-answer counter of these labels, resolved once (labels() takes a lock and
    validates the names on each call, on the hot path of every commit)."""
    return PAYMENTS.labels(env=env, service=service, state=state)


@cache
def isp_exchange(group: str, isp: str, call: str, outcome: str) -> Histogram:
    """The ISP-latency histogram of these labels, resolved once (as payment_answers)."""
    return ISP_HTTP_SECONDS.labels(group=group, isp=isp, call=call, outcome=outcome)


@cache
def rate_limited(reason: str) -> Counter:
    """The refusal counter of this reason, resolved once (as payment_answers)."""
    return RATE_LIMITED.labels(reason=reason)


def render(
    degraded: Mapping[str, tuple[bool, int]],
    db_waiting: int | None,
    isp_waiting: Mapping[str, int],
) -> bytes:
    """The scrape: `degraded` is each LIVE ISP's breaker, (open or probing, trips). The
    settlement gauge is kept by books.settlement (publish, watch), off the scrape's path."""
    if db_waiting is not None:
        DB_WAITING.set(db_waiting)
    for group, waiting in isp_waiting.items():
        ISP_WAITING.labels(group=group).set(waiting)
    for isp, (is_degraded, trips) in degraded.items():
        ISP_DEGRADED.labels(isp=isp).set(1 if is_degraded else 0)
        ISP_TRIPS.labels(isp=isp).set(trips)
    return generate_latest()
