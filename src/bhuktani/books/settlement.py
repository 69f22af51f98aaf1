"""Settlement with each ISP: its daily report of the payments it applied, compared with
our Success payments of that ISP, and the worker's morning run of it for every LIVE ISP.

Which day a payment belongs to (docs/OPERATING.md, "Settlement with each ISP"):
- The ISP's report of day D is the truth of D: every payment it lists is classified in the
  run of D (matched, an amount mismatch, or theirs-only), so for a clean run the matched
  sum is the ISP's total for the day.
- Ours are our Success payments created on D (Nepal time): the ISP applies a payment while
  its commit waits, right after we create it, and an operator's resolve days later does
  not move it. One the ISP applied on the day before or after (our commit at 23:59:59.9,
  its clock at 00:00:00.2) is counted in the run of the ISP's day, not as ours-only here.
- A payment of the ISP's report that we created on another day is matched when it is our
  Success payment of that ISP: it is listed as `across_midnight`.
- Theirs-only is any payment the ISP applied that is not our Success of that ISP: Failed
  or still Processing here (applied there without a charge to a merchant), or unknown.

Each run is a row of `settlements`. The worker's run of a day is stored once per ISP even
with several workers: the row is written under a lock (PostgreSQL: an advisory lock on
the (env, ISP, day); SQLite: its write lock) only where none is yet, and only the run
that writes it raises its mismatches (the metric, the audit log, a warning)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import structlog

from bhuktani import audit, metrics
from bhuktani.clock import DAY_MS, NEPAL, day_start_ms, nepal_day, now_ms
from bhuktani.domain import Env, State
from bhuktani.isps.base import Applied, Provider, ProviderUnavailable, ReportUnreadable
from bhuktani.runtime import Gateway
from bhuktani.services import registry
from bhuktani.store import Database, Row, Tx

log = structlog.get_logger()

# Each list of a run's report keeps at most this many payments (the counts are whole): a
# report of garbage must not make a row of hundreds of megabytes.
MAX_LISTED = 1000
# Our payments read by id in statements of this many.
IDS_PER_STATEMENT = 500
# An ISP whose report could not be had is asked again this often, this many times: the
# morning of its day. Then the operator runs `bhuktani settle` by hand.
RETRY_S = 15 * 60
# How often a process serving /metrics reads the last settlements (`watch`).
PUBLISH_EVERY_S = 60.0
MAX_TRIES = 12
WORKER = "worker"

_COLUMNS = "p.id, p.merchant_id, p.env, p.isp, p.reference, p.state, p.amount_paisa, p.created_ms"


@dataclass(frozen=True)
class Ours:
    payment_id: int
    merchant_id: int
    env: str
    isp: str
    reference: str
    state: str
    amount_paisa: int
    created_ms: int

    @classmethod
    def of(cls, row: Row) -> Ours:
        return cls(
            int(row["id"]),
            int(row["merchant_id"]),
            str(row["env"]),
            str(row["isp"]),
            str(row["reference"]),
            str(row["state"]),
            int(row["amount_paisa"]),
            int(row["created_ms"]),
        )


@dataclass
class Outcome:
    """One comparison of an ISP's day with our books."""

    env: str
    isp: str
    day: date
    reported_count: int = 0
    reported_paisa: int = 0
    matched_count: int = 0
    matched_paisa: int = 0
    ours_only: list[dict[str, Any]] = field(default_factory=list)
    theirs_only: list[dict[str, Any]] = field(default_factory=list)
    amount_mismatches: list[dict[str, Any]] = field(default_factory=list)
    across_midnight: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mismatches(self) -> int:
        return len(self.ours_only) + len(self.theirs_only) + len(self.amount_mismatches)

    def counts(self) -> dict[str, int]:
        return {
            "matched": self.matched_count,
            "ours_only": len(self.ours_only),
            "theirs_only": len(self.theirs_only),
            "amount_mismatches": len(self.amount_mismatches),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "isp": self.isp,
            "date": self.day.isoformat(),
            "reported": {"count": self.reported_count, "total_paisa": self.reported_paisa},
            "matched": {"count": self.matched_count, "total_paisa": self.matched_paisa},
            "counts": self.counts(),
            "mismatches": self.mismatches,
            "clean": self.mismatches == 0,
            "ours_only": self.ours_only[:MAX_LISTED],
            "theirs_only": self.theirs_only[:MAX_LISTED],
            "amount_mismatches": self.amount_mismatches[:MAX_LISTED],
            "across_midnight": self.across_midnight[:MAX_LISTED],
            "listed_up_to": MAX_LISTED,
        }

    def _match(self, ours: Ours, theirs: Applied) -> None:
        if ours.amount_paisa == theirs.amount_paisa:
            self.matched_count += 1
            self.matched_paisa += theirs.amount_paisa
            return
        self.amount_mismatches.append(
            {
                **_identity(ours),
                "ours_paisa": ours.amount_paisa,
                "theirs_paisa": theirs.amount_paisa,
                "receipt": theirs.receipt,
            }
        )


def _identity(ours: Ours) -> dict[str, Any]:
    return {
        "payment_id": ours.payment_id,
        "merchant_id": ours.merchant_id,
        "reference": ours.reference,
    }


def _at(at_ms: int) -> str:
    moment = datetime.fromtimestamp(at_ms // 1000, tz=NEPAL)
    return moment.replace(microsecond=at_ms % 1000 * 1000).isoformat(timespec="milliseconds")


def isp_group(isp: str) -> str | None:
    """The service group whose ISP system reaches the ISP; None for no ISP of ours."""
    service = registry.group_of(isp)
    return None if service is None else service.slug


async def compare(
    db: Database, provider: Provider, env: str, isp: str, day: date, *, today: date
) -> Outcome:
    """The ISP's report of `day` against our books. Raises ProviderUnavailable or
    ReportUnreadable when a report it needs cannot be had (`today` bounds the days asked:
    a day not yet begun has no report)."""
    report = await provider.settlement(isp, day)
    outcome = Outcome(env, isp, day, len(report.payments), report.total_paisa)
    ours = {o.payment_id: o for o in await _success_of_day(db, env, isp, day)}
    elsewhere = await _by_id(
        db, [p.payment_id for p in report.payments if p.payment_id not in ours]
    )
    for theirs in report.payments:
        mine = ours.get(theirs.payment_id) or elsewhere.get(theirs.payment_id)
        if mine is None or (mine.env, mine.isp, mine.state) != (env, isp, State.SUCCESS):
            outcome.theirs_only.append(_theirs_only(outcome, theirs, mine))
            continue
        outcome._match(mine, theirs)
        if theirs.payment_id not in ours:
            outcome.across_midnight.append(_across(mine, day))
    reported = {p.payment_id for p in report.payments}
    missing = {i: o for i, o in ours.items() if i not in reported}
    for neighbour in (day - timedelta(days=1), day + timedelta(days=1)):
        if not missing or neighbour > today:
            continue
        there = await provider.settlement(isp, neighbour)
        for applied in there.payments:
            found = missing.pop(applied.payment_id, None)
            if found is not None:
                outcome.across_midnight.append(_across(found, neighbour))
    outcome.ours_only = [
        {
            **_identity(o),
            "amount_paisa": o.amount_paisa,
            "created_at": _at(o.created_ms),
        }
        for o in sorted(missing.values(), key=lambda o: (o.created_ms, o.payment_id))
    ]
    return outcome


def _theirs_only(outcome: Outcome, theirs: Applied, mine: Ours | None) -> dict[str, Any]:
    """`ours_state` is our payment's state, or None when we have no payment of this id for
    this ISP and environment."""
    same = mine is not None and (mine.env, mine.isp) == (outcome.env, outcome.isp)
    return {
        "payment_id": theirs.payment_id,
        "amount_paisa": theirs.amount_paisa,
        "receipt": theirs.receipt,
        "applied_at": _at(theirs.applied_ms),
        "ours_state": mine.state if mine is not None and same else None,
        "merchant_id": None if mine is None else mine.merchant_id,
        "reference": None if mine is None else mine.reference,
    }


def _across(ours: Ours, isp_day: date) -> dict[str, Any]:
    return {
        **_identity(ours),
        "our_day": nepal_day(ours.created_ms).isoformat(),
        "isp_day": isp_day.isoformat(),
    }


async def _success_of_day(db: Database, env: str, isp: str, day: date) -> Sequence[Ours]:
    """Our Success payments of the ISP created on the day. Through the merchants, so that
    each merchant's payments are read by their (merchant, env, created) index."""
    start_ms = day_start_ms(day)
    rows = await db.read(
        lambda tx: tx.fetch(
            f"SELECT {_COLUMNS} FROM merchants m JOIN payments p ON p.merchant_id = m.id"
            " WHERE p.env = $1 AND p.created_ms >= $2 AND p.created_ms < $3"
            " AND p.isp = $4 AND p.state = $5",
            env,
            start_ms,
            start_ms + DAY_MS,
            isp,
            State.SUCCESS.value,
        )
    )
    return [Ours.of(row) for row in rows]


async def _by_id(db: Database, ids: Sequence[int]) -> dict[int, Ours]:
    found: dict[int, Ours] = {}
    for start in range(0, len(ids), IDS_PER_STATEMENT):
        chunk = ids[start : start + IDS_PER_STATEMENT]
        marks = ", ".join(f"${n}" for n in range(1, len(chunk) + 1))
        sql = f"SELECT {_COLUMNS} FROM payments p WHERE p.id IN ({marks})"
        found.update((int(row["id"]), Ours.of(row)) for row in await _fetch(db, sql, chunk))
    return found


async def _fetch(db: Database, sql: str, args: Sequence[object]) -> Sequence[Row]:
    return await db.read(lambda tx: tx.fetch(sql, *args))


# Storing a run, and raising its mismatches.


async def store(db: Database, outcome: Outcome, *, operator: str, first_only: bool) -> int | None:
    """The run as a row of `settlements`, and its mismatches in the audit log, in one
    transaction; returns the row's id. With `first_only` (the worker) nothing is written
    where a run of the (env, ISP, day) is stored already, and None is returned."""
    report_json = json.dumps(outcome.to_json(), separators=(",", ":"))
    day = outcome.day.isoformat()

    async def write(tx: Tx) -> int | None:
        if first_only:
            if db.dialect == "postgresql":
                await tx.fetchrow("SELECT pg_advisory_xact_lock($1)", _lock_key(outcome))
            stored = await tx.fetchrow(
                "SELECT id FROM settlements WHERE env = $1 AND isp = $2 AND day = $3 LIMIT 1",
                outcome.env,
                outcome.isp,
                day,
            )
            if stored is not None:
                return None
        row = await tx.fetchrow(
            "INSERT INTO settlements (env, isp, day, ran_ms, matched_count, matched_paisa,"
            " ours_only, theirs_only, amount_mismatches, report_json)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            outcome.env,
            outcome.isp,
            day,
            now_ms(),
            outcome.matched_count,
            outcome.matched_paisa,
            len(outcome.ours_only),
            len(outcome.theirs_only),
            len(outcome.amount_mismatches),
            report_json,
        )
        assert row is not None
        if outcome.mismatches:
            await audit.record(
                tx,
                operator=operator,
                action="settle.mismatch",
                env=outcome.env,
                subject=f"{outcome.isp} {day}",
                details={"settlement_id": int(row["id"]), **outcome.counts()},
            )
        return int(row["id"])

    return await db.run(write)


def _lock_key(outcome: Outcome) -> int:
    """A signed 64-bit advisory lock key of the (env, ISP, day)."""
    name = f"settle:{outcome.env}:{outcome.isp}:{outcome.day.isoformat()}".encode()
    return int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)


def _raise(outcome: Outcome, settlement_id: int) -> None:
    """The worker's run, told: the metric, and a warning when there are mismatches (the
    operator's own `bhuktani settle` prints them instead)."""
    if outcome.env == Env.LIVE:
        metrics.SETTLEMENT_MISMATCHES.labels(isp=outcome.isp).set(outcome.mismatches)
    fields = {
        "settlement_id": settlement_id,
        "env": outcome.env,
        "isp": outcome.isp,
        "day": outcome.day.isoformat(),
        **outcome.counts(),
    }
    if outcome.mismatches:
        log.warning("settlement_mismatch", **fields)
    else:
        log.info("settled", **fields)


async def last_mismatches(db: Database) -> dict[str, int]:
    """Each LIVE ISP's mismatches in the last run of its latest day settled, for /metrics
    in a process other than the worker's."""
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT s.isp, s.ours_only + s.theirs_only + s.amount_mismatches AS mismatches"
            " FROM settlements s WHERE s.env = $1 AND s.id = (SELECT max(l.id)"
            " FROM settlements l WHERE l.env = s.env AND l.isp = s.isp AND l.day ="
            " (SELECT max(d.day) FROM settlements d WHERE d.env = s.env AND d.isp = s.isp))",
            Env.LIVE.value,
        )
    )
    return {str(row["isp"]): int(row["mismatches"]) for row in rows}


async def publish(db: Database) -> None:
    """Set the mismatches gauge from the database: each process that serves /metrics shows
    the last settlement of each LIVE ISP, whichever process ran it. A failed read is
    logged and leaves the gauge as it was: the metric never stops a process."""
    try:
        found = await last_mismatches(db)
    except Exception:
        log.exception("settlement_publish_failed")
        return
    for isp, mismatches in found.items():
        metrics.SETTLEMENT_MISMATCHES.labels(isp=isp).set(mismatches)


async def watch(db: Database, stop: asyncio.Event, every_s: float = PUBLISH_EVERY_S) -> None:
    """Until stop is set: `publish` every every_s, off the scrape's path (a scrape asks
    the database nothing)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        if not stop.is_set():
            await publish(db)


# The worker's morning run.


def due_day(at_ms: int, settle_at: str) -> date:
    """The latest day whose settling time has come: the day before today once it is past
    `settle_at` (HH:MM, Nepal time) today, else the day before yesterday."""
    local = datetime.fromtimestamp(at_ms / 1000, tz=NEPAL)
    before = timedelta(days=1 if local >= _settling_time(local, settle_at) else 2)
    return local.date() - before


def seconds_to_next(at_ms: int, settle_at: str) -> float:
    local = datetime.fromtimestamp(at_ms / 1000, tz=NEPAL)
    moment = _settling_time(local, settle_at)
    if moment <= local:
        moment += timedelta(days=1)
    return (moment - local).total_seconds()


def _settling_time(local: datetime, settle_at: str) -> datetime:
    hour, minute = (int(part) for part in settle_at.split(":"))
    return local.replace(hour=hour, minute=minute, second=0, microsecond=0)


async def settle_day(gateway: Gateway, day: date, tries: dict[str, int], *, today: date) -> bool:
    """Settle the day with every ISP of every LIVE group configured, but those settled
    already (by any worker) or tried MAX_TRIES times; returns whether any is left to try."""
    settled = await _settled(gateway.db, day)
    left = False
    for isp, provider in _live_isps(gateway):
        if isp in settled or tries.get(isp, 0) >= MAX_TRIES:
            continue
        try:
            outcome = await compare(gateway.db, provider, Env.LIVE, isp, day, today=today)
            stored_id = await store(gateway.db, outcome, operator=WORKER, first_only=True)
            if stored_id is not None:
                _raise(outcome, stored_id)
        except (ProviderUnavailable, ReportUnreadable) as exc:
            left |= _failed(tries, isp, day, str(exc))
        except Exception:
            log.exception("settle_error", isp=isp, day=day.isoformat())
            left |= _failed(tries, isp, day, "an error of ours (see the traceback)")
    return left


def _live_isps(gateway: Gateway) -> Iterable[tuple[str, Provider]]:
    for group, provider in list(gateway.live.items()):
        service = registry.BY_SLUG.get(group)
        for isp in () if service is None else service.isps:
            yield isp, provider


def _failed(tries: dict[str, int], isp: str, day: date, why: str) -> bool:
    tries[isp] = tries.get(isp, 0) + 1
    if tries[isp] < MAX_TRIES:
        log.warning("settle_retry", isp=isp, day=day.isoformat(), tries=tries[isp], why=why)
        return True
    log.error(
        "settle_given_up",
        isp=isp,
        day=day.isoformat(),
        tries=tries[isp],
        why=why,
        run=f"bhuktani settle {isp} --date {day.isoformat()}",
    )
    return False


async def _settled(db: Database, day: date) -> set[str]:
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT DISTINCT isp FROM settlements WHERE env = $1 AND day = $2",
            Env.LIVE.value,
            day.isoformat(),
        )
    )
    return {str(row["isp"]) for row in rows}


async def run(gateway: Gateway, stop: asyncio.Event, *, clock: Callable[[], int] = now_ms) -> None:
    """Until stop is set: each morning at settle_at_npt, the day before settled with every
    LIVE ISP; one not reached is tried again every RETRY_S, MAX_TRIES times. A worker that
    starts later in the day settles the day at once (`clock`: a test's day)."""
    settle_at = gateway.settings.settle_at_npt
    tries: dict[str, int] = {}
    current: date | None = None
    while not stop.is_set():
        at_ms = clock()
        day = due_day(at_ms, settle_at)
        if day != current:
            current, tries = day, {}
        try:
            left = await settle_day(gateway, day, tries, today=nepal_day(at_ms))
        except Exception:
            log.exception("settle_round_failed", day=day.isoformat())
            left = True
        wait_s = seconds_to_next(clock(), settle_at)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=min(wait_s, RETRY_S) if left else wait_s)
