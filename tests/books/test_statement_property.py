"""The statement's identity as a property: over random days of loads, payments that
succeed, fail or stay open, service charges and refunds, at instants spread across the
Nepal day boundary (18:15 UTC), every day's statement satisfies

    opening + loads - payments - charges + refunds = closing,

its totals are what was done that day, its closing is credits/bydate's for the day and
the next day's opening, and the closings the worker writes agree with the ones computed
without them (and change no read)."""

from __future__ import annotations

import asyncio
import heapq
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bhuktani.books import statements
from bhuktani.clock import DAY_MS, day_start_ms, nepal_day
from bhuktani.domain import State
from bhuktani.ledger.book import CreditsShort
from bhuktani.store import Database, connect
from tests.books.test_statements import Clock, Ledger, account_of, closings_of
from tests.support import new_merchant

FIRST_DAY = date(2024, 3, 10)
SPAN_DAYS = 3
BOUNDARIES = [day_start_ms(FIRST_DAY + timedelta(days=n)) for n in range(1, SPAN_DAYS)]
START_MS = day_start_ms(FIRST_DAY)

# Instants anywhere in the span, and many within two seconds of a Nepal midnight.
instants = st.one_of(
    st.integers(START_MS, START_MS + SPAN_DAYS * DAY_MS - 1),
    st.builds(lambda edge, off: edge + off, st.sampled_from(BOUNDARIES), st.integers(-2000, 2000)),
)
amounts = st.integers(1, 5_000_00)
loads = st.tuples(st.just("load"), instants, st.integers(1, 20_000_00))
payments = st.tuples(
    st.just("pay"),
    instants,
    amounts,
    st.one_of(st.just(0), st.integers(1, 200_00)),
    st.sampled_from(["success", "failed", "open"]),
    # Settled this long after the hold: often across midnight.
    st.integers(0, 8 * 3_600_000),
)
refunds = st.tuples(st.just("refund"), instants, st.integers(1, 100))
events = st.lists(st.one_of(loads, payments, refunds), min_size=1, max_size=25)


@dataclass
class Totals:
    loads: int = 0
    payments: int = 0
    charges: int = 0
    refunds: int = 0


@dataclass
class Paid:
    reference: str
    amount_paisa: int
    charge_paisa: int
    settled_ms: int
    refunded_paisa: int = 0


@dataclass
class Model:
    days: dict[date, Totals] = field(default_factory=lambda: defaultdict(Totals))
    paid: list[Paid] = field(default_factory=list)


async def play(db: Database, plan: list[tuple[Any, ...]], first_load: int) -> tuple[int, Model]:
    created = await new_merchant(db, test_rupees=0)
    clock = Clock(START_MS)
    books = Ledger(db, created.merchant_id, clock)
    model = Model()
    queue: list[tuple[int, int, tuple[Any, ...]]] = [(START_MS, 0, ("load", START_MS, first_load))]
    for seq, event in enumerate(plan, start=1):
        queue.append((int(event[1]), seq, event))
    heapq.heapify(queue)
    seq = len(queue)
    steps = 0
    while queue and steps < 200:
        steps += 1
        at_ms, _, event = heapq.heappop(queue)
        books.at(at_ms)
        day = nepal_day(at_ms)
        if event[0] == "load":
            amount = int(event[2])
            await books.load(amount)
            model.days[day].loads += amount
        elif event[0] == "pay":
            _, _, amount, charge, outcome, delay = event
            try:
                payment_id, reference = await books.hold(int(amount), int(charge))
            except CreditsShort:
                continue
            model.days[day].payments += int(amount)
            model.days[day].charges += int(charge)
            if outcome != "open":
                seq += 1
                settle = ("settle", payment_id, reference, amount, charge, outcome)
                heapq.heappush(queue, (at_ms + int(delay), seq, settle))
        elif event[0] == "settle":
            _, payment_id, reference, amount, charge, outcome = event
            state = State.SUCCESS if outcome == "success" else State.FAILED
            await books.finish(int(payment_id), state, charged=int(charge) > 0)
            if state is State.SUCCESS:
                model.paid.append(Paid(str(reference), int(amount), int(charge), at_ms))
            else:
                model.days[day].refunds += int(amount) + int(charge)
        else:
            percent = int(event[2])
            open_to_refund = [
                p for p in model.paid if p.settled_ms <= at_ms and p.refunded_paisa < p.amount_paisa
            ]
            if not open_to_refund:
                continue
            paid = open_to_refund[0]
            left = paid.amount_paisa - paid.refunded_paisa
            amount = left if percent == 100 else max(1, left * percent // 100)
            await books.refund(paid.reference, amount, f"refund {percent}%")
            paid.refunded_paisa += amount
            model.days[day].refunds += amount
            if paid.refunded_paisa == paid.amount_paisa:
                # The refund that completes the amount gives the charge back.
                model.days[day].refunds += paid.charge_paisa
    return created.merchant_id, model


DAYS = [FIRST_DAY + timedelta(days=n) for n in range(-1, SPAN_DAYS + 1)]


async def check(db: Database, merchant_id: int, model: Model) -> None:
    computed: dict[date, statements.Statement] = {}
    closing_before = 0
    for day in DAYS:
        found = await statements.statement(db, merchant_id, "test", day)
        expected = model.days.get(day, Totals())
        assert (
            found.loads_paisa,
            found.payments_paisa,
            found.charges_paisa,
            found.refunds_paisa,
        ) == (
            expected.loads,
            expected.payments,
            expected.charges,
            expected.refunds,
        ), day
        assert (
            found.opening_paisa
            + found.loads_paisa
            - found.payments_paisa
            - found.charges_paisa
            + found.refunds_paisa
            == found.closing_paisa
        ), day
        assert found.opening_paisa == closing_before, day
        assert found.closing_paisa == await statements.credits_on(db, merchant_id, "test", day)
        assert found.closing_paisa >= 0
        closing_before = found.closing_paisa
        computed[day] = found

    # The worker's round: its closings are the ones computed from the transfers alone.
    account = await account_of(db, merchant_id)
    assert await closings_of(db, account) == {}
    await statements.close_days(db, after_s=0)
    written = await closings_of(db, account)
    assert written, "every merchant here has entries on a day long over"
    for day_text, (paisa, _) in written.items():
        assert paisa == computed[date.fromisoformat(day_text)].closing_paisa, day_text
    entry_days = {d for d, s in computed.items() if s.entries}
    assert entry_days <= {date.fromisoformat(d) for d in written}
    # A second round writes nothing; reads with the closings are the reads without them.
    await statements.close_days(db, after_s=0)
    assert await closings_of(db, account) == written
    for day in DAYS:
        again = await statements.statement(db, merchant_id, "test", day)
        assert again == computed[day], day
        assert await statements.credits_on(db, merchant_id, "test", day) == again.closing_paisa


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=events, first_load=st.integers(0, 50_000_00))
def test_every_day_adds_up_to_the_paisa(
    db_url: str, plan: list[tuple[Any, ...]], first_load: int
) -> None:
    async def run() -> None:
        db = await connect(db_url)
        try:
            merchant_id, model = await play(db, plan, max(first_load, 1))
            await check(db, merchant_id, model)
        finally:
            await db.close()

    asyncio.run(run())
