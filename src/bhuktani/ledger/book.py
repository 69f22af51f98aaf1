"""The PaymentBook: the money half of a payment, in the two transactions around the ISP
call (docs/DESIGN.md), written once.

- `open_hold`: the payment's row, its pending transfer, the session it spends and the
  merchant's held credits, in one transaction;
- `finalize`: a Processing payment made final, its hold posted (Success) or voided
  (Failed, the session given back), in one transaction. The commit, the reconciler and an
  operator's resolve all finish a payment here.

A payment with a service charge holds its amount and its charge in the one hold; a post
moves the charge on from the ISP's account to the fees account in the same transaction,
a void gives back both.

Rows are always taken in one order: the session, the payment, the transfers, the ISP's
account, the fees account, then the merchant's balance row, the hot one, last (it stays locked the least,
and two transactions never wait on each other in opposite orders).

`StatementBook` runs each step as a statement of one transaction, on any engine;
`ledger.postgres.PostgresBook` runs the same steps as one statement where a round trip
is worth saving. Which one a process uses is chosen once, by `book_for`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bhuktani.clock import now_ms
from bhuktani.domain import State
from bhuktani.ledger import accounts
from bhuktani.store import Database, Row, Tx

# A payment found by its id that is still Processing. Written so that no plan can reach it
# through payments_due (state, next_check_ms): a plan made while the table was small
# would then walk every Processing entry of that index, dead ones included, on each
# settle. (IS TRUE is not indexable; the id's primary key is.)
BY_ID_STILL_PROCESSING = "id = $1 AND (state = 'Processing') IS TRUE"

# What finalize returns of a payment, on either engine.
PAYMENT_COLUMNS = (
    "id, merchant_id, env, reference, state, isp_status, detail, amount_paisa,"
    " hold_transfer_id, session_id, checks"
)

# What the statement by statement finalize reads of a payment: a charged one's post also
# moves its charge.
FINAL_COLUMNS = PAYMENT_COLUMNS + ", charge_paisa"

# A new payment's columns as both engines insert them (a charged one adds charge_paisa).
NEW_PAYMENT_COLUMNS = (
    "id, merchant_id, env, reference, service, isp, username, package_code, package_title,"
    " duration_code, days, amount_paisa, session_id, hold_transfer_id, state, next_check_ms,"
    " created_ms, updated_ms"
)


@dataclass(frozen=True)
class NewPayment:
    """A payment as open_hold writes it. `id` is also the ISP's idempotency key."""

    id: int
    merchant_id: int
    env: str
    reference: str
    service: str
    isp: str
    username: str
    package_code: str | None
    package_title: str
    duration_code: str
    days: int
    amount_paisa: int
    session_id: int | None
    # From when the reconciler looks at it, in case the commit's process dies.
    first_check_ms: int
    # The merchant's service charge, held with amount_paisa and paid to the fees account
    # when the payment posts.
    charge_paisa: int = 0

    def __post_init__(self) -> None:
        assert self.charge_paisa >= 0, self.charge_paisa

    @property
    def hold_paisa(self) -> int:
        """What the hold takes of the merchant's available credits."""
        return self.amount_paisa + self.charge_paisa

    def values(self) -> tuple[object, ...]:
        """Its columns from id to session_id, in NEW_PAYMENT_COLUMNS' order."""
        return (
            self.id,
            self.merchant_id,
            self.env,
            self.reference,
            self.service,
            self.isp,
            self.username,
            self.package_code,
            self.package_title,
            self.duration_code,
            self.days,
            self.amount_paisa,
            self.session_id,
        )


@dataclass(frozen=True)
class Final:
    """How a payment ends: its state (Success or Failed), the ISP's word, the detail."""

    state: State
    isp_status: str
    detail: str

    def __post_init__(self) -> None:
        assert self.state in (State.SUCCESS, State.FAILED), self.state


@dataclass(frozen=True)
class Finalized:
    row: Row  # PAYMENT_COLUMNS, as the payment is now
    available_paisa: int  # the merchant's, after the hold was closed
    # The transfer that closed the hold; None where one statement did it all.
    transfer_id: int | None


class CreditsShort(Exception):
    """The merchant's available credits do not cover the hold; nothing was written."""

    def __init__(self, available_paisa: int) -> None:
        super().__init__(f"available {available_paisa} paisa")
        self.available_paisa = available_paisa


class SessionTaken(Exception):
    """The session was spent by another payment, or expired; nothing was written."""


# Run inside finalize's transaction once the payment is final, before the balance rows:
# the merchant's callback is queued here, so a crash cannot lose it.
OnFinal = Callable[[Tx, Row], Awaitable[None]]


class PaymentBook(Protocol):
    db: Database

    async def open_hold(self, payment: NewPayment) -> None:
        """Raises UniqueViolation (the reference is taken), CreditsShort or
        SessionTaken; then nothing is written."""
        ...

    async def finalize(
        self,
        payment_id: int,
        final: Final,
        *,
        on_final: OnFinal | None = None,
        charged: bool = False,
    ) -> Finalized | None:
        """In a transaction of its own. None: the payment was no longer Processing.
        `charged` says the payment holds a service charge, as the caller that held it
        knows: where a finalize runs as one statement (PostgreSQL, no on_final), the
        statement is chosen by it. A finalize with on_final reads the charge itself."""
        ...

    async def finalize_in(
        self,
        tx: Tx,
        payment_id: int,
        final: Final,
        *,
        on_final: OnFinal | None = None,
        flagged_only: bool = False,
    ) -> Finalized | None:
        """In the caller's transaction; flagged_only moves only a flagged payment (an
        operator's decision). None: the payment was no longer Processing (or flagged)."""
        ...


async def payment_accounts(tx: Tx, payment: NewPayment) -> tuple[int, int]:
    """The merchant's account and the ISP's, created on first use; and a charged payment's
    fees account, which its post credits."""
    merchant_id = await accounts.merchant_account(tx, payment.merchant_id, payment.env)
    isp_id = await accounts.ensure_account(
        tx, "isp", payment.env, accounts.isp_code(payment.isp, payment.id)
    )
    if payment.charge_paisa:
        await accounts.fees_account(tx, payment.env, payment.id)
    return merchant_id, isp_id


async def available_paisa(tx: Tx, merchant_account_id: int) -> int:
    return (await accounts.balance(tx, merchant_account_id)).available_paisa


class StatementBook:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def open_hold(self, payment: NewPayment) -> None:
        async def body(tx: Tx) -> None:
            # A used reference fails the payment's insert (UniqueViolation): no look-up
            # first, in this transaction or before it.
            merchant_id, isp_id = await payment_accounts(tx, payment)
            hold_id = await accounts.open_pending(
                tx, merchant_id, isp_id, payment.hold_paisa, payment.id
            )
            now = now_ms()
            await tx.execute(
                f"INSERT INTO payments ({NEW_PAYMENT_COLUMNS}, charge_paisa) VALUES ($1, $2,"
                " $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'Processing', $15, $16,"
                " $16, $17)",
                *payment.values(),
                hold_id,
                payment.first_check_ms,
                now,
                payment.charge_paisa,
            )
            if payment.session_id is not None:
                claimed = await tx.execute(
                    "UPDATE sessions SET payment_id = $2"
                    " WHERE id = $1 AND payment_id IS NULL AND expires_ms > $3",
                    payment.session_id,
                    payment.id,
                    now,
                )
                if claimed != 1:
                    raise SessionTaken()
            # The hot balance row is locked last, for the shortest time.
            try:
                await accounts.reserve(tx, merchant_id, payment.hold_paisa)
            except accounts.InsufficientCredits:
                raise CreditsShort(await available_paisa(tx, merchant_id)) from None

        await self.db.run(body)

    async def finalize(
        self,
        payment_id: int,
        final: Final,
        *,
        on_final: OnFinal | None = None,
        charged: bool = False,
    ) -> Finalized | None:
        # Statement by statement the payment's row tells its charge: `charged` is not needed.
        return await self.db.run(
            lambda tx: self.finalize_in(tx, payment_id, final, on_final=on_final)
        )

    async def finalize_in(
        self,
        tx: Tx,
        payment_id: int,
        final: Final,
        *,
        on_final: OnFinal | None = None,
        flagged_only: bool = False,
    ) -> Finalized | None:
        # One statement moves the payment only while it is Processing, locks its row and
        # returns it: a payment finished meanwhile (by the reconciler, say) is left alone.
        row = await tx.fetchrow(
            "UPDATE payments SET state = $2, isp_status = $3, detail = $4, updated_ms = $5,"
            f" next_check_ms = NULL WHERE {BY_ID_STILL_PROCESSING}"
            + (" AND flagged = $6" if flagged_only else "")
            + f" RETURNING {FINAL_COLUMNS}",
            payment_id,
            final.state.value,
            final.isp_status,
            final.detail,
            now_ms(),
            *((True,) if flagged_only else ()),
        )
        if row is None:
            return None
        hold_id = row["hold_transfer_id"]
        assert hold_id is not None, "every Processing payment has a hold"
        if final.state is State.FAILED and row["session_id"] is not None:
            # A failed payment gives its session back, so the merchant can pay with it again.
            await tx.execute(
                "UPDATE sessions SET payment_id = NULL WHERE id = $1 AND payment_id = $2",
                row["session_id"],
                payment_id,
            )
        if on_final is not None:
            await on_final(tx, row)
        # The balance rows last: they are the hot ones.
        if final.state is State.SUCCESS:
            charge_paisa = int(row["charge_paisa"])
            fee = None
            if charge_paisa:
                fees_id = await accounts.fees_account(tx, str(row["env"]), payment_id)
                fee = accounts.Fee(fees_id, charge_paisa)
            closed = await accounts.post(
                tx, int(hold_id), fee, one_writer=self.db.whole_transactions
            )
        else:
            closed = await accounts.void(tx, int(hold_id))
        return Finalized(row, closed.available_paisa, closed.transfer_id)


def book_for(db: Database) -> PaymentBook:
    """The book of this engine: one statement a step where each statement is a round
    trip (PostgreSQL), statement by statement where a transaction runs whole on one
    thread (SQLite)."""
    if db.dialect == "postgresql":
        from bhuktani.ledger.postgres import PostgresBook

        return PostgresBook(db)
    return StatementBook(db)
