"""Prometheus metrics. With `serve --workers N` every worker writes its values to files in
PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode, a directory `serve` makes
fresh for each run), and the worker that answers a scrape reads them all: counters and
histograms are summed over every worker of the run, so a scrape never goes back, and
each gauge says how its workers' values combine (`multiprocess_mode`, ignored with one
process). A gauge of a worker's own state is kept current by that worker (`publish`,
every PUBLISH_EVERY_S), not only by the one that answers."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Set by `serve --workers N` before its workers start; prometheus_client reads it at import.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# How often each process writes the gauges of its own state (breakers, waiting queues).
PUBLISH_EVERY_S = 1.0

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
# Each worker has its own breakers: an ISP is degraded while any running worker's breaker is
# not closed (livemax), and its trips are those of the running workers together (livesum).
ISP_DEGRADED = Gauge(
    "bhuktani_isp_degraded",
    "1 while a LIVE ISP's breaker is not closed",
    ["isp"],
    multiprocess_mode="livemax",
)
ISP_TRIPS = Gauge(
    "bhuktani_isp_breaker_trips",
    "Times a LIVE ISP's breaker opened",
    ["isp"],
    multiprocess_mode="livesum",
)
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
# Each worker has its own pool: the queues of the running workers add up (livesum).
DB_WAITING = Gauge(
    "bhuktani_db_statements_waiting",
    "PostgreSQL statements waiting for a connection now",
    multiprocess_mode="livesum",
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
    multiprocess_mode="livesum",  # each worker its own connections, as DB_WAITING
)

# Requests refused with 1022: reason "merchant" (the merchant's request rate) or "auth"
# (the client address's failed authentications).
RATE_LIMITED = Counter(
    "bhuktani_rate_limited", "Requests refused by a rate limit, by reason", ["reason"]
)

# The last settlement with each LIVE ISP (books/settlement.py): its ours-only, theirs-only
# and amount mismatches together; 0 when the ISP's report and our books agreed.
# Read from the database by every worker: the latest read is the truth (livemostrecent).
SETTLEMENT_MISMATCHES = Gauge(
    "bhuktani_settlement_mismatches",
    "Mismatches in the last settlement of a day with each LIVE ISP",
    ["isp"],
    multiprocess_mode="livemostrecent",
)

# What waits for an operator, read from the database (books/health.py) by every process
# that serves /metrics, so that they show whichever process (API or `bhuktani worker`)
# changed it; as SETTLEMENT_MISMATCHES, the latest read wins.
# 1 while this process's last read of them succeeded: /healthz's answer, for alerts.
DATABASE_UP = Gauge(
    "bhuktani_database_up",
    "1 while the database answered the last read of the operator's queues, else 0",
    multiprocess_mode="livemostrecent",
)
FLAGGED = Gauge(
    "bhuktani_payments_flagged",
    "Payments flagged for an operator and not resolved yet, by environment",
    ["env"],
    multiprocess_mode="livemostrecent",
)
RECONCILE_OVERDUE = Gauge(
    "bhuktani_reconcile_overdue",
    "Processing payments whose status question is over a minute late: the reconciler's backlog",
    multiprocess_mode="livemostrecent",
)
CALLBACKS = Gauge(
    "bhuktani_callbacks",
    "Callbacks by status: pending (to be sent), overdue (pending, over 5 minutes late),"
    " expired (given up after the last retry)",
    ["status"],
    multiprocess_mode="livemostrecent",
)
BALANCES_LOW = Gauge(
    "bhuktani_merchant_balances_low",
    "Merchant accounts below their low-balance threshold (told balance.low), by environment",
    ["env"],
    multiprocess_mode="livemostrecent",
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


def publish(
    degraded: Mapping[str, tuple[bool, int]],
    db_waiting: int | None,
    isp_waiting: Mapping[str, int],
) -> None:
    """This process's own state into its gauges: `degraded` is each LIVE ISP's breaker,
    (open or probing, trips)."""
    if db_waiting is not None:
        DB_WAITING.set(db_waiting)
    for group, waiting in isp_waiting.items():
        ISP_WAITING.labels(group=group).set(waiting)
    for isp, (is_degraded, trips) in degraded.items():
        ISP_DEGRADED.labels(isp=isp).set(1 if is_degraded else 0)
        ISP_TRIPS.labels(isp=isp).set(trips)


def render(
    degraded: Mapping[str, tuple[bool, int]],
    db_waiting: int | None,
    isp_waiting: Mapping[str, int],
) -> bytes:
    """The scrape: this process's own state first (`publish`), then every worker's values
    with several, this process's alone with one. The database's gauges are kept by
    books.settlement and books.health (publish, watch), off the scrape's path."""
    publish(degraded, db_waiting, isp_waiting)
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return generate_latest()
    forget_dead_workers(Path(directory), os.getpid())
    return generate_latest(_workers_registry(directory))


@cache
def _workers_registry(directory: str) -> CollectorRegistry:
    """A registry that reads every worker's files at each scrape (resolved once: its
    collector lists the directory anew on each collect)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def forget_dead_workers(directory: Path, me: int) -> list[int]:
    """Drop the live gauges of workers that are gone, and return their pids. A worker that
    exits (drained, killed as hung, out of memory) cannot say so itself, and its slot's
    replacement has another pid: its last values would count in every live* gauge. Its
    counters and histograms stay, so that totals never go back."""
    gone = [pid for pid in _live_gauge_pids(directory.iterdir()) if pid != me and not _alive(pid)]
    for pid in gone:
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    return gone


def _live_gauge_pids(files: Iterable[Path]) -> set[int]:
    """The pids of the files `gauge_live<mode>_<pid>.db` (prometheus_client's naming)."""
    pids = set()
    for file in files:
        stem, _, pid = file.stem.rpartition("_")
        if stem.startswith("gauge_live") and pid.isdigit():
            pids.add(int(pid))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process took the pid: ours is gone
        return False
    return True
