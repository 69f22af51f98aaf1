"""The double-entry ledger: two-phase transfers (hold, then post or void), refunds, and the
constraints that keep a merchant from promising money it does not hold.

Each test opens accounts of its own (unique codes, a funding account of its own), so the
numbers it checks are its own; the books of the whole database must still balance after
each, whatever else ran there before."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from bhuktani.ledger import accounts as ledger
from bhuktani.store import CheckViolation, Database, Tx, UniqueViolation, connect
from tests.support import assert_books_balance

ENV = "test"
T = TypeVar("T")


@dataclass(frozen=True)
class Books:
    funding: int
    merchant: int
    other_merchant: int
    isp: int

    def ids(self) -> tuple[int, ...]:
        return (self.funding, self.merchant, self.other_merchant, self.isp)


def payment_id() -> int:
    # Negative: never the id of a real payment in the shared database, so that no status
    # look-up of another test finds these transfers.
    return -int(uuid.uuid4().int % 2**62) - 1


async def open_books(db: Database, merchant_paisa: int = 0) -> Books:
    tag = uuid.uuid4().hex[:16]
    async with db.transaction() as tx:
        books = Books(
            funding=await ledger.ensure_account(tx, "funding", ENV, f"funding:{tag}"),
            merchant=await ledger.ensure_account(tx, "merchant", ENV, f"merchant:a{tag}"),
            other_merchant=await ledger.ensure_account(tx, "merchant", ENV, f"merchant:b{tag}"),
            isp=await ledger.ensure_account(tx, "isp", ENV, f"isp:{tag}"),
        )
        if merchant_paisa:
            await ledger.transfer(tx, books.funding, books.merchant, merchant_paisa, note="load")
    return books


Row = tuple[int, int, int]  # balance, held, consumed


async def accounts(db: Database, ids: tuple[int, ...]) -> dict[int, Row]:
    async with db.transaction() as tx:
        rows = {
            account_id: await tx.fetchrow(
                "SELECT balance_paisa, held_paisa, consumed_paisa FROM accounts WHERE id = $1",
                account_id,
            )
            for account_id in ids
        }
    found: dict[int, Row] = {}
    for account_id, row in rows.items():
        assert row is not None, account_id
        found[account_id] = (
            int(row["balance_paisa"]),
            int(row["held_paisa"]),
            int(row["consumed_paisa"]),
        )
    return found


TRANSFER_COLUMNS = (
    "id",
    "kind",
    "debit_account_id",
    "credit_account_id",
    "amount_paisa",
    "pending_id",
    "payment_id",
    "note",
    "created_ms",
)


async def transfers(db: Database, ids: tuple[int, ...]) -> list[tuple[Any, ...]]:
    """The transfers touching these accounts, every column, in id order."""
    listed = ", ".join(f"${n}" for n in range(1, len(ids) + 1))
    async with db.transaction() as tx:
        rows = await tx.fetch(
            f"SELECT {', '.join(TRANSFER_COLUMNS)} FROM transfers"
            f" WHERE debit_account_id IN ({listed}) OR credit_account_id IN ({listed})"
            " ORDER BY id",
            *ids,
        )
    return [tuple(row[column] for column in TRANSFER_COLUMNS) for row in rows]


async def state(db: Database, books: Books) -> tuple[dict[int, Row], list[tuple[Any, ...]]]:
    return await accounts(db, books.ids()), await transfers(db, books.ids())


async def hold(tx: Tx, debit_id: int, credit_id: int, amount_paisa: int, payment: int) -> int:
    """Credits held for a payment: the reserve first, so that a refusal writes nothing even
    in a transaction that goes on; the PaymentBook writes the pending transfer first and
    relies on its transaction's rollback."""
    await ledger.reserve(tx, debit_id, amount_paisa)
    return await ledger.open_pending(tx, debit_id, credit_id, amount_paisa, payment)


async def in_tx(db: Database, step: Callable[[Tx], Awaitable[T]]) -> T:
    async with db.transaction() as tx:
        return await step(tx)


async def available(db: Database, account_id: int) -> ledger.Balance:
    async with db.transaction() as tx:
        return await ledger.balance(tx, account_id)


async def test_hold_then_post_moves_exactly_the_amount_to_the_isp(db: Database) -> None:
    books = await open_books(db, merchant_paisa=10_000)
    pending = await in_tx(db, lambda tx: hold(tx, books.merchant, books.isp, 2_501, payment_id()))
    assert await available(db, books.merchant) == ledger.Balance(
        available_paisa=7_499, held_paisa=2_501, consumed_paisa=0
    )
    assert (await accounts(db, (books.isp,)))[books.isp] == (0, 0, 0)
    await assert_books_balance(db)

    other = await in_tx(db, lambda tx: hold(tx, books.merchant, books.isp, 1_000, payment_id()))
    closed = await in_tx(db, lambda tx: ledger.post(tx, pending))
    # The merchant's available balance as the post left it, the other hold still on.
    assert closed.available_paisa == 10_000 - 2_501 - 1_000
    await in_tx(db, lambda tx: ledger.void(tx, other))

    after = await accounts(db, books.ids())
    assert after[books.merchant] == (10_000 - 2_501, 0, 2_501)
    assert after[books.isp] == (2_501, 0, 0)
    assert after[books.funding] == (-10_000, 0, 0)
    assert after[books.other_merchant] == (0, 0, 0)
    assert await available(db, books.merchant) == ledger.Balance(7_499, 0, 2_501)
    await assert_books_balance(db)


async def test_hold_then_void_restores_availability(db: Database) -> None:
    books = await open_books(db, merchant_paisa=10_000)
    before = await accounts(db, books.ids())
    pending = await in_tx(db, lambda tx: hold(tx, books.merchant, books.isp, 10_000, payment_id()))
    assert (await available(db, books.merchant)).available_paisa == 0

    closed = await in_tx(db, lambda tx: ledger.void(tx, pending))

    assert closed.available_paisa == 10_000
    assert await accounts(db, books.ids()) == before
    assert await available(db, books.merchant) == ledger.Balance(10_000, 0, 0)
    kinds = [t[1] for t in await transfers(db, books.ids())]
    assert kinds == ["single", "pending", "void"]
    await assert_books_balance(db)


async def test_a_hold_of_exactly_the_available_credits_is_allowed(db: Database) -> None:
    books = await open_books(db, merchant_paisa=1_000)
    await in_tx(db, lambda tx: hold(tx, books.merchant, books.isp, 600, payment_id()))
    await in_tx(db, lambda tx: hold(tx, books.merchant, books.isp, 400, payment_id()))
    assert await available(db, books.merchant) == ledger.Balance(0, 1_000, 0)
    await assert_books_balance(db)


async def test_a_hold_beyond_availability_raises_and_changes_nothing(db: Database) -> None:
    books = await open_books(db, merchant_paisa=1_000)
    await in_tx(db, lambda tx: hold(tx, books.merchant, books.isp, 600, payment_id()))
    before = await state(db, books)

    # The refusal is the ledger's own: a caller that catches it and commits keeps nothing.
    async with db.transaction() as tx:
        with pytest.raises(ledger.InsufficientCredits):
            await hold(tx, books.merchant, books.isp, 401, payment_id())
    assert await state(db, books) == before

    with pytest.raises(ledger.InsufficientCredits):
        await in_tx(db, lambda tx: hold(tx, books.merchant, books.isp, 10**9, payment_id()))
    assert await state(db, books) == before
    assert await available(db, books.merchant) == ledger.Balance(400, 600, 0)
    await assert_books_balance(db)


async def test_a_transfer_beyond_availability_raises_and_changes_nothing(db: Database) -> None:
    books = await open_books(db, merchant_paisa=1_000)
    await in_tx(db, lambda tx: hold(tx, books.merchant, books.isp, 300, payment_id()))
    before = await state(db, books)

    async with db.transaction() as tx:
        with pytest.raises(ledger.InsufficientCredits):
            await ledger.transfer(tx, books.merchant, books.other_merchant, 701)
    assert await state(db, books) == before

    await in_tx(db, lambda tx: ledger.transfer(tx, books.merchant, books.other_merchant, 700))
    after = await accounts(db, books.ids())
    assert after[books.merchant] == (300, 300, 0)
    assert after[books.other_merchant] == (700, 0, 0)
    await assert_books_balance(db)


Close = Callable[[Tx, int], Awaitable[ledger.Closed]]
CLOSE: dict[str, Close] = {"post": ledger.post, "void": ledger.void}


@pytest.mark.parametrize("first", CLOSE)
@pytest.mark.parametrize("second", CLOSE)
async def test_a_pending_transfer_closes_once(db: Database, first: str, second: str) -> None:
    books = await open_books(db, merchant_paisa=5_000)
    pending = await in_tx(db, lambda tx: hold(tx, books.merchant, books.isp, 1_234, payment_id()))
    await in_tx(db, lambda tx: CLOSE[first](tx, pending))
    before = await state(db, books)

    with pytest.raises(UniqueViolation):
        await in_tx(db, lambda tx: CLOSE[second](tx, pending))

    assert await state(db, books) == before
    await assert_books_balance(db)


@pytest.mark.parametrize("refund_paisa", [1_500, 600])
async def test_a_refund_moves_money_back_and_lowers_consumed(
    db: Database, refund_paisa: int
) -> None:
    books = await open_books(db, merchant_paisa=10_000)
    paid = payment_id()
    pending = await in_tx(db, lambda tx: hold(tx, books.merchant, books.isp, 1_500, paid))
    await in_tx(db, lambda tx: ledger.post(tx, pending))
    before = await accounts(db, books.ids())

    await in_tx(
        db,
        lambda tx: ledger.refund(tx, books.isp, books.merchant, refund_paisa, paid, "ISP reversed"),
    )

    after = await accounts(db, books.ids())
    balance, held, consumed = before[books.merchant]
    assert after[books.merchant] == (balance + refund_paisa, held, consumed - refund_paisa)
    assert after[books.isp] == (before[books.isp][0] - refund_paisa, 0, 0)
    assert after[books.funding] == before[books.funding]
    last = (await transfers(db, books.ids()))[-1]
    assert last[1:5] == ("single", books.isp, books.merchant, refund_paisa)
    assert last[6] == paid
    assert last[7] == "ISP reversed"
    await assert_books_balance(db)


@pytest.mark.parametrize(
    "update",
    [
        "UPDATE accounts SET held_paisa = balance_paisa + 1 WHERE id = $1",
        "UPDATE accounts SET balance_paisa = held_paisa - 1 WHERE id = $1",
        "UPDATE accounts SET balance_paisa = -1 WHERE id = $1",
    ],
)
async def test_a_merchant_account_can_never_go_below_zero_available(
    db: Database, update: str
) -> None:
    books = await open_books(db, merchant_paisa=100)
    await in_tx(db, lambda tx: hold(tx, books.merchant, books.isp, 40, payment_id()))
    before = await accounts(db, books.ids())

    with pytest.raises(CheckViolation):
        await in_tx(db, lambda tx: tx.execute(update, books.merchant))

    assert await accounts(db, books.ids()) == before
    await assert_books_balance(db)


async def test_held_credits_can_never_be_negative(db: Database) -> None:
    books = await open_books(db, merchant_paisa=100)
    with pytest.raises(CheckViolation):
        await in_tx(
            db,
            lambda tx: tx.execute("UPDATE accounts SET held_paisa = -1 WHERE id = $1", books.isp),
        )


async def test_only_merchant_accounts_are_bounded_below(db: Database) -> None:
    # The funding account is negative by design (it is where credits come from); the
    # constraint binds merchants only.
    books = await open_books(db, merchant_paisa=100)
    assert (await accounts(db, (books.funding,)))[books.funding][0] == -100
    await assert_books_balance(db)


SRC = Path(__file__).resolve().parents[2] / "src" / "bhuktani"
REWRITES_TRANSFERS = re.compile(
    r"\b(UPDATE\s+transfers|DELETE\s+FROM\s+transfers|TRUNCATE\s+(TABLE\s+)?transfers)\b",
    re.IGNORECASE,
)


def test_no_code_rewrites_or_deletes_a_transfer() -> None:
    offenders = [
        f"{path.relative_to(SRC)}: {match.group(0)}"
        for path in sorted(SRC.rglob("*.py"))
        if "migrations" not in path.parts
        for match in REWRITES_TRANSFERS.finditer(path.read_text())
    ]
    assert offenders == []


async def transfer_of(closing: Awaitable[ledger.Closed]) -> int:
    return (await closing).transfer_id


async def test_transfers_are_only_ever_appended(db: Database) -> None:
    books = await open_books(db, merchant_paisa=10_000)
    paid = payment_id()
    first = await in_tx(db, lambda tx: hold(tx, books.merchant, books.isp, 1_000, paid))
    second = await in_tx(db, lambda tx: hold(tx, books.merchant, books.isp, 2_000, payment_id()))
    seen = await transfers(db, books.ids())
    steps: list[Callable[[Tx], Awaitable[int]]] = [
        lambda tx: transfer_of(ledger.post(tx, first)),
        lambda tx: transfer_of(ledger.void(tx, second)),
        lambda tx: ledger.refund(tx, books.isp, books.merchant, 1_000, paid, "reversed"),
        lambda tx: ledger.transfer(tx, books.merchant, books.other_merchant, 500),
    ]
    for step in steps:
        new_id = await in_tx(db, step)
        now = await transfers(db, books.ids())
        assert now[: len(seen)] == seen, "earlier transfers are untouched"
        assert [t[0] for t in now[len(seen) :]] == [new_id], "exactly one transfer appended"
        seen = now
    await assert_books_balance(db)


# Random sequences against a model ------------------------------------------------------

amounts = st.integers(min_value=1, max_value=5_000)


class LedgerMachine(RuleBasedStateMachine):
    """hold / post / void / transfer / refund on two merchants and two ISPs; after every
    step the database equals a plain Python model and the whole books balance."""

    loop: asyncio.AbstractEventLoop
    db: Database

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await awaitable

        return self.loop.run_until_complete(wrapped())

    def __init__(self) -> None:
        super().__init__()
        tag = uuid.uuid4().hex[:16]

        async def open_accounts(tx: Tx) -> list[int]:
            return [
                await ledger.ensure_account(tx, "funding", ENV, f"funding:s{tag}"),
                await ledger.ensure_account(tx, "merchant", ENV, f"merchant:s0{tag}"),
                await ledger.ensure_account(tx, "merchant", ENV, f"merchant:s1{tag}"),
                await ledger.ensure_account(tx, "isp", ENV, f"isp:s0{tag}"),
                await ledger.ensure_account(tx, "isp", ENV, f"isp:s1{tag}"),
            ]

        ids = self.run(in_tx(self.db, open_accounts))
        self.funding, self.merchants, self.isps = ids[0], ids[1:3], ids[3:5]
        self.ids = tuple(ids)
        self.model: dict[int, list[int]] = {i: [0, 0, 0] for i in ids}
        self.open: dict[int, tuple[int, int, int]] = {}  # pending id -> debit, credit, amount
        self.closed: list[int] = []
        self.seen: list[tuple[Any, ...]] = []

    def available(self, account_id: int) -> int:
        balance, held, _ = self.model[account_id]
        return balance - held

    def move(self, debit: int, credit: int, amount: int) -> None:
        self.model[debit][0] -= amount
        self.model[credit][0] += amount

    @rule(merchant=st.sampled_from([0, 1]), amount=st.integers(1, 10_000))
    def load(self, merchant: int, amount: int) -> None:
        target = self.merchants[merchant]
        self.run(in_tx(self.db, lambda tx: ledger.transfer(tx, self.funding, target, amount)))
        self.move(self.funding, target, amount)

    @rule(merchant=st.sampled_from([0, 1]), isp=st.sampled_from([0, 1]), amount=amounts)
    def hold(self, merchant: int, isp: int, amount: int) -> None:
        debit, credit = self.merchants[merchant], self.isps[isp]

        async def step(tx: Tx) -> int:
            return await hold(tx, debit, credit, amount, payment_id())

        if amount > self.available(debit):
            with pytest.raises(ledger.InsufficientCredits):
                self.run(in_tx(self.db, step))
            return
        pending = self.run(in_tx(self.db, step))
        self.model[debit][1] += amount
        self.open[pending] = (debit, credit, amount)

    @precondition(lambda self: self.open)
    @rule(data=st.data(), verb=st.sampled_from(sorted(CLOSE)))
    def close(self, data: st.DataObject, verb: str) -> None:
        pending = data.draw(st.sampled_from(sorted(self.open)))
        self.run(in_tx(self.db, lambda tx: CLOSE[verb](tx, pending)))
        debit, credit, amount = self.open.pop(pending)
        self.closed.append(pending)
        self.model[debit][1] -= amount
        if verb == "post":
            self.move(debit, credit, amount)
            self.model[debit][2] += amount

    @precondition(lambda self: self.closed)
    @rule(data=st.data(), verb=st.sampled_from(sorted(CLOSE)))
    def close_again(self, data: st.DataObject, verb: str) -> None:
        pending = data.draw(st.sampled_from(self.closed))
        with pytest.raises(UniqueViolation):
            self.run(in_tx(self.db, lambda tx: CLOSE[verb](tx, pending)))

    @rule(
        debit=st.sampled_from(range(1, 5)),
        credit=st.sampled_from(range(0, 5)),
        amount=amounts,
    )
    def transfer(self, debit: int, credit: int, amount: int) -> None:
        if debit == credit:
            return
        source, target = self.ids[debit], self.ids[credit]

        async def step(tx: Tx) -> int:
            return await ledger.transfer(tx, source, target, amount)

        if source in self.merchants and amount > self.available(source):
            with pytest.raises(ledger.InsufficientCredits):
                self.run(in_tx(self.db, step))
            return
        self.run(in_tx(self.db, step))
        self.move(source, target, amount)

    @precondition(lambda self: any(self.model[m][2] > 0 for m in self.merchants))
    @rule(data=st.data(), isp=st.sampled_from([0, 1]))
    def refund(self, data: st.DataObject, isp: int) -> None:
        merchant = data.draw(st.sampled_from([m for m in self.merchants if self.model[m][2] > 0]))
        amount = data.draw(st.integers(1, self.model[merchant][2]))
        source = self.isps[isp]
        self.run(
            in_tx(
                self.db,
                lambda tx: ledger.refund(tx, source, merchant, amount, payment_id(), "refund"),
            )
        )
        self.move(source, merchant, amount)
        self.model[merchant][2] -= amount

    @invariant()
    def books_match_the_model(self) -> None:
        assert sum(balance for balance, _, _ in self.model.values()) == 0
        found = self.run(accounts(self.db, self.ids))
        assert found == {i: tuple(row) for i, row in self.model.items()}
        for merchant in self.merchants:
            assert self.available(merchant) >= 0
        self.run(assert_books_balance(self.db))
        now = self.run(transfers(self.db, self.ids))
        assert now[: len(self.seen)] == self.seen, "transfers are append-only"
        self.seen = now

    def teardown(self) -> None:
        async def release_all(tx: Tx) -> None:
            for pending in self.open:
                await ledger.void(tx, pending)

        self.run(in_tx(self.db, release_all))


def test_random_sequences_keep_the_books_equal_to_a_model(db_url: str) -> None:
    loop = asyncio.new_event_loop()
    try:
        db = loop.run_until_complete(connect(db_url))
        try:
            machine = type("Machine", (LedgerMachine,), {"loop": loop, "db": db})
            run_state_machine_as_test(
                machine,
                settings=settings(
                    max_examples=25,
                    stateful_step_count=15,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow],
                ),
            )
        finally:
            loop.run_until_complete(db.close())
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
