"""PostgreSQL's PaymentBook: a payment's hold and its finalize, each as one statement.

Through asyncpg every statement is a round trip, and so are BEGIN and COMMIT: the hold
took five and the finalize six. Here each is one data-modifying CTE, committed on its own,
doing what `StatementBook` does statement by statement, in the same order. SQLite has no
data-modifying CTEs, and runs those bodies whole on its own thread with no round trip to
save, so it keeps them.

Each step reads the rows the step before it returned, so PostgreSQL runs them in order
(an unreferenced one would run last), and a step that finds nothing stops the ones after
it. What must undo the whole statement raises: a used reference (the payments' unique
key), credits that do not cover the hold (the merchant account's CHECK).

A payment with a service charge has statements of its own (HOLD_CHARGED,
SETTLE_POST_CHARGED), so that one without pays for no step it does not need; the commit,
which held the charge, says which (`finalize(charged=...)`). A void needs no variant: it
releases whatever the hold took, amount and charge.

A finalize that must queue a callback or check a flag (the reconciler's, an operator's)
runs statement by statement: those are off the commit's path.
"""

from __future__ import annotations

from bhuktani.clock import now_ms
from bhuktani.domain import State
from bhuktani.ledger import accounts
from bhuktani.ledger.book import (
    BY_ID_STILL_PROCESSING,
    FINAL_COLUMNS,
    NEW_PAYMENT_COLUMNS,
    PAYMENT_COLUMNS,
    CreditsShort,
    Final,
    Finalized,
    NewPayment,
    OnFinal,
    SessionTaken,
    StatementBook,
    available_paisa,
    payment_accounts,
)
from bhuktani.store import CheckViolation


# $1 payment id, $2 merchant, $3 env, $4 reference, $5 service, $6 isp, $7 username,
# $8 package code, $9 package title, $10 duration code, $11 days, $12 amount,
# $13 session (or NULL), $14 merchant account, $15 ISP account, $16 first check, $17 now.
# Rows are taken in the order of the statement by statement transaction, which is the
# order settle takes them in too (the payment before the merchant's balance row): a hold
# that waits on a payment being settled (a retry of its reference) must not hold that
# balance row meanwhile, or the two wait on each other. The session is claimed first
# and gates the rest; the payment names its hold by an id drawn before the transfer is
# written; the merchant's balance row, the hot one, is locked last, by the main UPDATE.
def _hold(*, charged: bool) -> str:
    """The hold; a charged one also writes the payment's charge ($18) and holds the
    amount and the charge together."""
    columns = NEW_PAYMENT_COLUMNS + (", charge_paisa" if charged else "")
    charge_value = ", $18" if charged else ""
    held = "$12 + $18" if charged else "$12"
    return f"""
WITH claimed AS (
    UPDATE sessions SET payment_id = $1
    WHERE id = $13::bigint AND payment_id IS NULL AND expires_ms > $17
    RETURNING id
), payment AS (
    INSERT INTO payments ({columns})
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::bigint,
        nextval(pg_get_serial_sequence('transfers', 'id')), 'Processing', $16, $17, $17{charge_value}
    WHERE $13::bigint IS NULL OR EXISTS (SELECT 1 FROM claimed)
    RETURNING id, hold_transfer_id
), hold AS (
    INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount_paisa,
        payment_id, created_ms)
    SELECT payment.hold_transfer_id, 'pending', $14, $15, {held}, payment.id, $17 FROM payment
    RETURNING id
)
UPDATE accounts SET held_paisa = held_paisa + {held}
WHERE id = $14 AND EXISTS (SELECT 1 FROM hold)
RETURNING id
"""


HOLD = _hold(charged=False)
# $18 the charge (> 0).
HOLD_CHARGED = _hold(charged=True)


# $1 payment id, $2 state, $3 ISP status, $4 detail, $5 now; `kind` is 'post' or 'void'.
# The payment moves only while Processing; its hold is closed by a transfer that copies
# it; a post credits the ISP and then debits the merchant (hot rows last, as in the
# ledger), a void only releases the merchant's hold and gives a Failed payment's session
# back. No row: the payment was no longer Processing, or had no hold to close (never so:
# every Processing payment has one), which leaves it to the reconciler rather than commit
# a final state that moved no money. A hold closed already fails the closing transfer's
# unique pending_id, and the whole statement with it.
# One statement for each kind, not one taking the kind as a parameter: a step that a
# parameter turns off is still planned, and its table opened and locked, on every call.
# With the void's session step in every post, a commit (hold and post, 16 merchants)
# cost 0.73 ms of backend CPU against 0.65 without it, and a whole session-less commit on
# PostgreSQL ran 1,280 req/s against 1,490 (medians of alternated runs).
def _settle(
    kind: str, *, steps: str, debit: str, debit_when: str, columns: str = PAYMENT_COLUMNS
) -> str:
    """The settle of one kind: `steps` run between closing the hold and debiting the
    merchant, `debit` moves the merchant's columns, once `debit_when` holds; `columns`
    are the payment's columns the steps and the caller read."""
    return f"""
WITH moved AS (
    UPDATE payments SET state = $2, isp_status = $3, detail = $4, updated_ms = $5,
        next_check_ms = NULL
    WHERE {BY_ID_STILL_PROCESSING}
        AND (SELECT t.kind FROM transfers t WHERE t.id = payments.hold_transfer_id) = 'pending'
    RETURNING {columns}
), closed AS (
    INSERT INTO transfers (kind, debit_account_id, credit_account_id, amount_paisa,
        pending_id, payment_id, created_ms)
    SELECT '{kind}', t.debit_account_id, t.credit_account_id, t.amount_paisa, t.id,
        t.payment_id, $5
    FROM transfers t
    WHERE t.id = (SELECT hold_transfer_id FROM moved) AND t.kind = 'pending'
    RETURNING debit_account_id, credit_account_id, amount_paisa
){steps}, debited AS (
    UPDATE accounts SET {debit}
    FROM closed
    WHERE accounts.id = closed.debit_account_id{debit_when}
    RETURNING accounts.balance_paisa - accounts.held_paisa AS available
)
SELECT moved.*, debited.available FROM moved LEFT JOIN debited ON TRUE
"""


# A post's debit of the merchant: the whole hold, which it has spent.
_POST_DEBIT = """balance_paisa = accounts.balance_paisa - closed.amount_paisa,
        held_paisa = accounts.held_paisa - closed.amount_paisa,
        consumed_paisa = accounts.consumed_paisa + closed.amount_paisa"""
# A Success: the hold posted, the ISP credited, then the merchant debited.
SETTLE_POST = _settle(
    "post",
    steps=""", credited AS (
    UPDATE accounts SET balance_paisa = accounts.balance_paisa + closed.amount_paisa
    FROM closed
    WHERE accounts.id = closed.credit_account_id
    RETURNING accounts.id
)""",
    debit=_POST_DEBIT,
    debit_when=" AND EXISTS (SELECT 1 FROM credited)",
)
# A charged Success: the hold (amount and charge) posted; the charge on from the ISP's
# account to the payment's fees shard, a transfer of its own; the ISP's row written once,
# credited the hold less the charge; the fees row; then the merchant debited the whole
# hold. Rows in the order of the statement by statement post (ledger.accounts.post) and
# of a refund: the ISP's, the fees, the merchant's. The fees shard was made by the hold
# (book.payment_accounts); were it missing, the fee's credit account would be NULL and
# the whole statement fail, rather than post a charge to nowhere.
SETTLE_POST_CHARGED = _settle(
    "post",
    columns=FINAL_COLUMNS,
    steps=f""", fee AS (
    INSERT INTO transfers (kind, debit_account_id, credit_account_id, amount_paisa,
        payment_id, note, created_ms)
    SELECT 'single', closed.credit_account_id,
        (SELECT a.id FROM accounts a WHERE a.kind = '{accounts.FEES_KIND}' AND a.env = moved.env
            AND a.code = '{accounts.FEES_CODE_PREFIX}' || CAST(moved.id % {accounts.FEE_SHARDS} AS TEXT)),
        moved.charge_paisa, moved.id, '{accounts.FEE_NOTE}', $5
    FROM closed, moved
    RETURNING debit_account_id, credit_account_id, amount_paisa
), credited AS (
    UPDATE accounts SET balance_paisa = accounts.balance_paisa + closed.amount_paisa
        - fee.amount_paisa
    FROM closed, fee
    WHERE accounts.id = closed.credit_account_id
    RETURNING accounts.id
), charged AS (
    UPDATE accounts SET balance_paisa = accounts.balance_paisa + fee.amount_paisa
    FROM fee
    WHERE accounts.id = fee.credit_account_id AND EXISTS (SELECT 1 FROM credited)
    RETURNING accounts.id
)""",
    debit=_POST_DEBIT,
    debit_when=" AND EXISTS (SELECT 1 FROM charged)",
)
# A Failed payment: the hold voided, its session given back, the merchant's hold released.
SETTLE_VOID = _settle(
    "void",
    steps=""", released AS (
    UPDATE sessions SET payment_id = NULL
    FROM moved
    WHERE sessions.id = moved.session_id AND sessions.payment_id = moved.id
    RETURNING sessions.id
)""",
    debit="held_paisa = accounts.held_paisa - closed.amount_paisa",
    debit_when="",
)


class PostgresBook(StatementBook):
    def _remembered_accounts(self, payment: NewPayment) -> tuple[int, int] | None:
        """The payment's two accounts without a query, once both are known here (and
        a charged payment's fees shard, which its settle finds by its code)."""
        memo = self.db.memo
        merchant_id = accounts.remembered_account(
            memo, "merchant", payment.env, accounts.merchant_code(payment.merchant_id)
        )
        isp_id = accounts.remembered_account(
            memo, "isp", payment.env, accounts.isp_code(payment.isp, payment.id)
        )
        if merchant_id is None or isp_id is None:
            return None
        if payment.charge_paisa and (
            accounts.remembered_account(
                memo, accounts.FEES_KIND, payment.env, accounts.fees_code(payment.id)
            )
            is None
        ):
            return None
        return merchant_id, isp_id

    async def open_hold(self, payment: NewPayment) -> None:
        known = self._remembered_accounts(payment)
        if known is None:
            known = await self.db.run(lambda tx: payment_accounts(tx, payment))
        merchant_id, isp_id = known
        try:
            row = await self.db.once(
                HOLD_CHARGED if payment.charge_paisa else HOLD,
                *payment.values(),
                merchant_id,
                isp_id,
                payment.first_check_ms,
                now_ms(),
                *((payment.charge_paisa,) if payment.charge_paisa else ()),
            )
        except CheckViolation as exc:
            # The balance row comes last: the payment's insert had passed, so the
            # reference was free and short credits are the answer, as statement by
            # statement.
            if accounts.CREDITS_CHECK not in str(exc):
                raise
            raise CreditsShort(
                await self.db.read(lambda tx: available_paisa(tx, merchant_id))
            ) from None
        if row is None:
            raise SessionTaken()  # and nothing was written

    async def finalize(
        self,
        payment_id: int,
        final: Final,
        *,
        on_final: OnFinal | None = None,
        charged: bool = False,
    ) -> Finalized | None:
        if on_final is not None:
            return await super().finalize(payment_id, final, on_final=on_final)
        if final.state is State.SUCCESS:
            statement = SETTLE_POST_CHARGED if charged else SETTLE_POST
        else:
            statement = SETTLE_VOID
        row = await self.db.once(
            statement,
            payment_id,
            final.state.value,
            final.isp_status,
            final.detail,
            now_ms(),
        )
        if row is None:
            return None
        return Finalized(row, int(row["available"]), None)
