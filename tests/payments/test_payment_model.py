"""The payment's three steps (DESIGN.md) and the ledger under them, against a plain Python
model: random sequences of step 1 (open), the ISP deciding, step 3 (the commit settles),
crashes between the steps, reconciler rounds, refunds and flags, on a few merchants with
little credit in both environments.

The ISP is scripted: its status answer for each payment is what the model says, so that
every outcome (Paid, Refused, Unknown, NotFound) meets every state of ours. After every
step the books balance, the database equals the model, a final state is the one first
reached, and a reference has at most one payment per merchant and environment."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from bhuktani import runtime
from bhuktani.api.errors import code_of
from bhuktani.clock import now_ms
from bhuktani.errors import Refusal
from bhuktani.isps.base import (
    Lookup,
    NotFound,
    Order,
    Paid,
    PayResult,
    Refused,
    StatusResult,
    Subscriber,
    Unknown,
)
from bhuktani.ledger import accounts as ledger
from bhuktani.ledger.book import book_for
from bhuktani.merchants.service import Principal
from bhuktani.payments import reconcile as reconciler
from bhuktani.payments import records
from bhuktani.payments.sessions import random_id
from bhuktani.store import Database, connect
from tests.support import IspDouble, assert_books_balance, fast_settings, new_merchant

T = TypeVar("T")

SERVICE = "arrownet"
ENVS = ("test", "live")
MERCHANTS = 3
# Little credit and large payments, so that 1016 comes within a few steps.
CREDITS_RUPEES = {"test": 800, "live": 500}
AMOUNTS_PAISA = (100_00, 250_00, 400_00)
# A handful of references, so that hypothesis reuses them often (1013).
REFERENCES = tuple(f"ref-{n}" for n in range(5))
# What the ISP may say of a payment; NotFound: it never received it.
OUTCOMES = ("Paid", "Refused", "Unknown", "NotFound")

# The commit's view of a payment: step 3 still to come, done, or never (the process died).
IN_FLIGHT, ANSWERED, CRASHED = "in flight", "answered", "crashed"


class ScriptedIsp(IspDouble):
    """An ISP whose status answer for each payment is what the model wrote in `answers`;
    a payment it never received is NotFound. Payments of other tests (left in the shared
    database) are Unknown to it, so the reconciler leaves them as they are."""

    # NotFound is final at once: the reconciler fails a payment the ISP never received.
    settle_window_s = 0.0

    def __init__(self) -> None:
        self.answers: dict[int, StatusResult] = {}
        self.ours: set[int] = set()

    async def lookup(self, query: Lookup) -> Subscriber | None:
        return None

    async def pay(self, order: Order) -> PayResult:
        raise AssertionError("the model answers the commit through records.settle")

    async def status(self, order: Order) -> StatusResult:
        if order.payment_id not in self.ours:
            return Unknown("not a payment of this model")
        return self.answers.get(order.payment_id, NotFound())


@dataclass
class Wallet:
    """A merchant's credit account in one environment, as the model expects it."""

    account_id: int
    balance_paisa: int
    held_paisa: int = 0
    consumed_paisa: int = 0

    @property
    def available_paisa(self) -> int:
        return self.balance_paisa - self.held_paisa


WalletKey = tuple[int, str]  # merchant id, env


@dataclass
class Payment:
    payment_id: int
    wallet: WalletKey
    reference: str
    amount_paisa: int
    state: str = "Processing"
    flagged: bool = False
    commit: str = IN_FLIGHT
    refunded_paisa: int = 0


def order_for(merchant_id: int, isp: str, amount_paisa: int) -> Order:
    return Order(
        payment_id=random_id(),
        merchant_id=merchant_id,
        isp=isp,
        username="Pradhanang",
        package_code=None,
        package_title="50Mbps",
        duration_code="1",
        days=30,
        amount_paisa=amount_paisa,
    )


class PaymentMachine(RuleBasedStateMachine):
    loop: asyncio.AbstractEventLoop
    db: Database
    gateway: runtime.Gateway

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await awaitable

        return self.loop.run_until_complete(wrapped())

    def __init__(self) -> None:
        super().__init__()
        self.isp = ScriptedIsp()
        self.gateway.sandbox = self.isp
        self.gateway.live = {SERVICE: self.isp}
        # An ISP of its own, so that its payable account is this machine's alone.
        self.isp_name = f"model-{uuid.uuid4().hex[:12]}"
        self.isp_payable = {env: 0 for env in ENVS}
        self.wallets: dict[WalletKey, Wallet] = {}
        self.merchant_ids: list[int] = []
        for n in range(MERCHANTS):
            merchant = self.run(
                new_merchant(
                    self.db,
                    test_rupees=CREDITS_RUPEES["test"],
                    live_rupees=CREDITS_RUPEES["live"],
                    name=f"model merchant {n}",
                )
            )
            self.merchant_ids.append(merchant.merchant_id)
            for env in ENVS:
                account_id = self.run(self._merchant_account(merchant.merchant_id, env))
                self.wallets[(merchant.merchant_id, env)] = Wallet(
                    account_id, CREDITS_RUPEES[env] * 100
                )
        self.payments: dict[int, Payment] = {}
        self.by_reference: dict[tuple[int, str, str], int] = {}
        self.first_final: dict[int, str] = {}

    async def _merchant_account(self, merchant_id: int, env: str) -> int:
        async with self.db.transaction() as tx:
            return await ledger.merchant_account(tx, merchant_id, env)

    async def _credited_account(self, payment_id: int) -> int:
        """The ISP account the payment's hold credits (however the ledger spreads an ISP's
        payable over accounts)."""
        async with self.db.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT t.credit_account_id FROM payments p"
                " JOIN transfers t ON t.id = p.hold_transfer_id WHERE p.id = $1",
                payment_id,
            )
        assert row is not None, payment_id
        return int(row["credit_account_id"])

    # The model's moves ------------------------------------------------------------------

    def _finish(self, payment: Payment, state: str) -> None:
        """Post (Success) or void (Failed) the payment's hold in the model."""
        assert payment.state == "Processing"
        wallet = self.wallets[payment.wallet]
        wallet.held_paisa -= payment.amount_paisa
        if state == "Success":
            wallet.balance_paisa -= payment.amount_paisa
            wallet.consumed_paisa += payment.amount_paisa
            self.isp_payable[payment.wallet[1]] += payment.amount_paisa
        payment.state = state
        self.first_final.setdefault(payment.payment_id, state)

    def _pick(self, data: st.DataObject, payments: list[Payment]) -> Payment:
        # In the order they were opened: payment ids are random, and hypothesis must be
        # able to replay a choice.
        return data.draw(st.sampled_from(payments))

    def _where(self, *, commit: str | None = None, state: str | None = None) -> list[Payment]:
        return [
            p
            for p in self.payments.values()
            if (commit is None or p.commit == commit) and (state is None or p.state == state)
        ]

    # Rules ------------------------------------------------------------------------------

    @rule(
        merchant=st.integers(0, MERCHANTS - 1),
        env=st.sampled_from(ENVS),
        reference=st.sampled_from(REFERENCES),
        amount_paisa=st.sampled_from(AMOUNTS_PAISA),
        isp_outcome=st.sampled_from(OUTCOMES),
    )
    def open_payment(
        self, merchant: int, env: str, reference: str, amount_paisa: int, isp_outcome: str
    ) -> None:
        """Step 1, due for the reconciler at once (as after a crash's grace period), and
        what the ISP made of the call of step 2 that follows it."""
        merchant_id = self.merchant_ids[merchant]
        wallet = self.wallets[(merchant_id, env)]
        principal = Principal(merchant_id, env, "all")
        order = order_for(merchant_id, self.isp_name, amount_paisa)
        existing = self.by_reference.get((merchant_id, env, reference))
        opening = records.open_payment(
            book_for(self.db), principal, SERVICE, order, reference, None, first_check_ms=0
        )
        if existing is not None:
            with pytest.raises(Refusal) as refused:
                self.run(opening)
            assert code_of(refused.value) == "1013", refused.value
            event("open: 1013, reference used")
            first = self.payments[existing]
            assert refused.value.error_data == {"id": existing, "state": first.state}
            return
        if amount_paisa > wallet.available_paisa:
            with pytest.raises(Refusal) as refused:
                self.run(opening)
            assert code_of(refused.value) == "1016", refused.value
            event("open: 1016, credits short")
            return
        self.run(opening)
        self.isp.ours.add(order.payment_id)
        self._isp_records(order.payment_id, isp_outcome)
        wallet.held_paisa += amount_paisa
        self.payments[order.payment_id] = Payment(
            order.payment_id, (merchant_id, env), reference, amount_paisa
        )
        self.by_reference[(merchant_id, env, reference)] = order.payment_id
        event("open: held")

    @precondition(
        lambda self: any(
            not isinstance(self.isp.answers.get(p), Paid | Refused) for p in self.payments
        )
    )
    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    def isp_decides(self, data: st.DataObject, outcome: str) -> None:
        """What the ISP knows of a payment changes until it is Paid or Refused, whatever
        our state: a late answer must never move a final payment of ours."""
        undecided = [
            p
            for p in self.payments.values()
            if not isinstance(self.isp.answers.get(p.payment_id), Paid | Refused)
        ]
        self._isp_records(self._pick(data, undecided).payment_id, outcome)

    def _isp_records(self, payment_id: int, outcome: str) -> None:
        answers = self.isp.answers
        if outcome == "Paid":
            answers[payment_id] = Paid(f"receipt-{payment_id}")
        elif outcome == "Refused":
            answers[payment_id] = Refused("Plan not available")
        elif outcome == "Unknown":
            answers[payment_id] = Unknown("the ISP is still processing the payment")
        else:
            answers.pop(payment_id, None)

    @precondition(lambda self: self._where(commit=IN_FLIGHT))
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """The process dies between step 1 and step 3: the commit never settles."""
        self._pick(data, self._where(commit=IN_FLIGHT)).commit = CRASHED

    @precondition(lambda self: self._where(commit=IN_FLIGHT))
    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    def commit_settles(self, data: st.DataObject, outcome: str) -> None:
        """Step 3 with the ISP's answer to the payment. A Paid or Refused answer is what the
        ISP then keeps (it is idempotent: a payment it decided keeps that answer); Unknown
        is a timeout; NotFound is never final here, only in the reconciler past the settle
        window. The reconciler may have settled the payment first: then nothing moves."""
        payment = self._pick(data, self._where(commit=IN_FLIGHT))
        decided = self.isp.answers.get(payment.payment_id)
        result: StatusResult
        if outcome in ("Paid", "Refused") and isinstance(decided, Paid | Refused):
            result = decided
        elif outcome == "Paid":
            result = Paid(f"receipt-{payment.payment_id}")
        elif outcome == "Refused":
            result = Refused("Plan not available")
        elif outcome == "Unknown":
            result = Unknown("no answer from the ISP in time")
        else:
            result = NotFound()
        if isinstance(result, Paid | Refused):
            self.isp.answers[payment.payment_id] = result
        backoff_ms = int(self.gateway.settings.reconcile_backoff_s[0] * 1000)
        settled = self.run(
            records.settle(
                book_for(self.db), payment.payment_id, result, next_check_ms=now_ms() + backoff_ms
            )
        )
        payment.commit = ANSWERED
        moved = payment.state == "Processing" and isinstance(result, Paid | Refused)
        if payment.state == "Processing":
            if isinstance(result, Paid):
                self._finish(payment, "Success")
            elif isinstance(result, Refused):
                self._finish(payment, "Failed")
        event(f"commit: {type(result).__name__}, {'moved' if moved else 'kept'} {payment.state}")
        assert settled.payment_id == payment.payment_id
        assert settled.state == payment.state
        assert settled.amount_paisa == payment.amount_paisa
        assert settled.available_paisa == self.wallets[payment.wallet].available_paisa
        # The refusal the commit reports is this answer only if this answer moved it.
        assert settled.refusal == (result if moved and isinstance(result, Refused) else None)

    @rule()
    def reconciler_round(self) -> None:
        """Every Processing payment of ours that is not flagged is due (first check at 0, a
        backoff of 0) and asked once; only an explicit answer settles it."""
        expected: dict[int, str] = {}
        for payment in self._where(state="Processing"):
            if payment.flagged:
                continue
            answer = self.isp.answers.get(payment.payment_id, NotFound())
            if isinstance(answer, Paid):
                expected[payment.payment_id] = "Success"
            elif isinstance(answer, Refused | NotFound):
                expected[payment.payment_id] = "Failed"
        claimed = self.run(reconciler.run_once(self.gateway))
        assert claimed < self.gateway.settings.reconcile_batch, "one round claims all due"
        for payment_id, state in expected.items():
            self._finish(self.payments[payment_id], state)
            event(f"reconciler: {self.payments[payment_id].commit} -> {state}")

    @precondition(lambda self: self._refundable())
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        """The ISP reversed (part of) a Success payment: a new transfer back to the merchant;
        the payment stays Success."""
        payment = self._pick(data, self._refundable())
        amount_paisa = data.draw(
            st.integers(1, payment.amount_paisa - payment.refunded_paisa), label="refund"
        )
        env = payment.wallet[1]
        wallet = self.wallets[payment.wallet]

        async def give_back() -> int:
            isp_account = await self._credited_account(payment.payment_id)
            async with self.db.transaction() as tx:
                return await ledger.refund(
                    tx, isp_account, wallet.account_id, amount_paisa, payment.payment_id, "reversed"
                )

        self.run(give_back())
        payment.refunded_paisa += amount_paisa
        wallet.balance_paisa += amount_paisa
        wallet.consumed_paisa -= amount_paisa
        self.isp_payable[env] -= amount_paisa
        event("refund")

    def _refundable(self) -> list[Payment]:
        return [p for p in self._where(state="Success") if p.refunded_paisa < p.amount_paisa]

    @precondition(lambda self: self._where(commit=ANSWERED) + self._where(commit=CRASHED))
    @rule(data=st.data())
    def flag(self, data: st.DataObject) -> None:
        """Past the reconciliation window an operator takes over: the hold stays, the
        reconciler stops asking. A final payment is not flagged. (The window is a day, so a
        commit still in flight is never flagged.)"""
        payment = self._pick(data, self._where(commit=ANSWERED) + self._where(commit=CRASHED))
        self.run(records.flag(self.db, payment.payment_id, "past the window"))
        if payment.state == "Processing":
            payment.flagged = True
        event(f"flag: {payment.state}")

    # Invariants, after every step -------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        self.run(assert_books_balance(self.db))

    @invariant()
    def accounts_equal_the_model(self) -> None:
        found = self.run(self._accounts())
        expected = {
            key: (w.balance_paisa, w.held_paisa, w.consumed_paisa)
            for key, w in self.wallets.items()
        }
        assert found == expected
        for key, wallet in self.wallets.items():
            assert wallet.available_paisa >= 0, key
        payable = self.run(self._isp_payable())
        assert payable == self.isp_payable

    async def _accounts(self) -> dict[WalletKey, tuple[int, int, int]]:
        found: dict[WalletKey, tuple[int, int, int]] = {}
        async with self.db.transaction() as tx:
            for key, wallet in self.wallets.items():
                row = await tx.fetchrow(
                    "SELECT balance_paisa, held_paisa, consumed_paisa FROM accounts WHERE id = $1",
                    wallet.account_id,
                )
                assert row is not None, key
                found[key] = (
                    int(row["balance_paisa"]),
                    int(row["held_paisa"]),
                    int(row["consumed_paisa"]),
                )
        return found

    async def _isp_payable(self) -> dict[str, int]:
        """What the ISP is owed in each environment: the sum over the accounts our holds
        credit (this machine's ISP is its own, so those accounts are ours alone)."""
        payable = {env: 0 for env in ENVS}
        async with self.db.transaction() as tx:
            accounts = set()
            for payment_id in self.payments:
                row = await tx.fetchrow(
                    "SELECT t.credit_account_id FROM payments p"
                    " JOIN transfers t ON t.id = p.hold_transfer_id WHERE p.id = $1",
                    payment_id,
                )
                assert row is not None, payment_id
                accounts.add(int(row["credit_account_id"]))
            for account_id in accounts:
                row = await tx.fetchrow(
                    "SELECT kind, env, code, balance_paisa, held_paisa FROM accounts WHERE id = $1",
                    account_id,
                )
                assert row is not None, account_id
                assert row["kind"] == "isp", row
                assert self.isp_name in str(row["code"]), row
                assert int(row["held_paisa"]) == 0, "holds are on the merchant's account"
                payable[str(row["env"])] += int(row["balance_paisa"])
        return payable

    @invariant()
    def payments_equal_the_model(self) -> None:
        rows = self.run(self._payments())
        found = {
            int(r["id"]): (
                (int(r["merchant_id"]), str(r["env"])),
                str(r["reference"]),
                int(r["amount_paisa"]),
                str(r["state"]),
                bool(r["flagged"]),
            )
            for r in rows
        }
        expected = {
            p.payment_id: (p.wallet, p.reference, p.amount_paisa, p.state, p.flagged)
            for p in self.payments.values()
        }
        assert found == expected
        keys = [(wallet, reference) for wallet, reference, *_ in found.values()]
        assert len(keys) == len(set(keys)), "a reference executes at most once"

    async def _payments(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        async with self.db.transaction() as tx:
            for merchant_id in self.merchant_ids:
                found = await tx.fetch(
                    "SELECT id, merchant_id, env, reference, amount_paisa, state, flagged"
                    " FROM payments WHERE merchant_id = $1",
                    merchant_id,
                )
                rows += [dict(r) for r in found]
        return rows

    @invariant()
    def final_states_never_change(self) -> None:
        rows = self.run(self._payments())
        states = {int(r["id"]): str(r["state"]) for r in rows}
        for payment_id, first in self.first_final.items():
            assert states[payment_id] == first, f"payment {payment_id} left {first}"
        for payment_id, state in states.items():
            assert state == "Processing" or payment_id in self.first_final, payment_id

    @invariant()
    def each_payment_moves_money_once(self) -> None:
        """One hold per payment, closed at most once: posted iff Success, voided iff
        Failed; refunds are new single transfers, never more than was paid."""
        transfers = self.run(self._transfers())
        for payment in self.payments.values():
            moves = transfers[payment.payment_id]
            closing = {"Processing": [], "Success": ["post"], "Failed": ["void"]}[payment.state]
            two_phase = sorted(kind for kind, _ in moves if kind != "single")
            assert two_phase == sorted(["pending", *closing]), (payment, moves)
            assert all(amount == payment.amount_paisa for kind, amount in moves if kind != "single")
            refunded_paisa = sum(amount for kind, amount in moves if kind == "single")
            assert refunded_paisa == payment.refunded_paisa <= payment.amount_paisa, payment

    async def _transfers(self) -> dict[int, list[tuple[str, int]]]:
        by_payment: dict[int, list[tuple[str, int]]] = {}
        async with self.db.transaction() as tx:
            for payment_id in self.payments:
                rows = await tx.fetch(
                    "SELECT kind, amount_paisa FROM transfers WHERE payment_id = $1",
                    payment_id,
                )
                by_payment[payment_id] = [(str(r["kind"]), int(r["amount_paisa"])) for r in rows]
        return by_payment

    def teardown(self) -> None:
        """Leave nothing held behind in the shared database: what is still Processing is
        refused, as an operator would release it."""
        for payment in self._where(state="Processing"):
            self.run(
                records.settle(
                    book_for(self.db),
                    payment.payment_id,
                    Refused("released at the end of the model run"),
                    next_check_ms=0,
                )
            )
        self.run(assert_books_balance(self.db))


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for a whole hypothesis run: the rules are synchronous and drive it."""
    event_loop = asyncio.new_event_loop()
    try:
        yield event_loop
    finally:
        event_loop.run_until_complete(event_loop.shutdown_default_executor())
        event_loop.close()


def test_random_payment_sequences_keep_the_books_equal_to_a_model(
    db_url: str, loop: asyncio.AbstractEventLoop
) -> None:
    db = loop.run_until_complete(connect(db_url))
    gateway = runtime.build(
        db,
        fast_settings(
            db_url,
            reconcile_backoff_s=[0.0],
            reconcile_flag_after_s=10**9,
            reconcile_batch=100_000,
        ),
    )
    try:
        machine = type("Machine", (PaymentMachine,), {"loop": loop, "db": db, "gateway": gateway})
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=25,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        gateway.live = {}
        loop.run_until_complete(gateway.aclose())
