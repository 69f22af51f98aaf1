"""Double-entry ledger with two-phase transfers (hold, then post or void).

Every function runs inside the caller's transaction, so that a state change and the money
it moves commit together or not at all. Merchant balance rows, the hot ones, are always
updated last (see _move).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from bhuktani.clock import now_ms
from bhuktani.store import Tx


class InsufficientCredits(Exception):
    pass


# The accounts' CHECK that keeps a merchant's available credits from going below zero.
CREDITS_CHECK = "merchant_available_not_negative"


@dataclass(frozen=True)
class Balance:
    available_paisa: int
    held_paisa: int
    consumed_paisa: int


def merchant_code(merchant_id: int) -> str:
    return f"merchant:{merchant_id}"


# Every payment to an ISP credits its account: one row for all merchants would serialise
# them all. The ISP's payable is spread over shards, picked by payment id; the ISP owes
# the sum of its shards.
ISP_SHARDS = 16


def isp_code(isp: str, payment_id: int | None = None) -> str:
    if payment_id is None:
        return f"isp:{isp}"
    return f"isp:{isp}/{payment_id % ISP_SHARDS}"


FUNDING_CODE = "funding"

# The service charges the gateway earns, per environment. Every charged payment credits
# this account when it posts: sharded by payment id like the ISPs' accounts, so that
# merchants paying at once do not queue on one row. The fees earned are the sum of the
# shards.
FEE_SHARDS = 16
FEES_KIND = "fees"
FEE_NOTE = "service charge"
FEE_REFUND_NOTE = "service charge refund"
# A shard's code is this and the payment id modulo FEE_SHARDS (the charged settle of
# ledger/postgres.py computes it in SQL the same way).
FEES_CODE_PREFIX = "fees/"


def fees_code(payment_id: int) -> str:
    assert payment_id > 0, payment_id
    return f"{FEES_CODE_PREFIX}{payment_id % FEE_SHARDS}"


async def fees_account(tx: Tx, env: str, payment_id: int) -> int:
    """The fees shard of a payment, created on first use."""
    return await ensure_account(tx, FEES_KIND, env, fees_code(payment_id))


def refunds_of(payments: str) -> str:
    """The refunds of the payments `payments` names (a condition on their id: "= $1",
    "IN ($1, $2)"), to read after "SELECT t.<columns>": the posted-at-once transfers
    naming a payment that run from its hold's credit account (the ISP's) back to its debit
    account (the merchant's). Its service charge's moves (ISP to fees, fees back to the
    merchant) name it too, and are not refunds of its amount."""
    return (
        "FROM transfers t JOIN transfers h ON h.payment_id = t.payment_id AND h.kind = 'pending'"
        f" WHERE t.payment_id {payments} AND t.kind = 'single'"
        " AND t.debit_account_id = h.credit_account_id AND t.credit_account_id = h.debit_account_id"
    )


# One payment's refunds, its id as $1.
REFUNDS_OF_PAYMENT = refunds_of("= $1")


@dataclass(frozen=True)
class Fee:
    """A payment's service charge and the fees account it goes to (or comes back from)."""

    account_id: int
    charge_paisa: int

    def __post_init__(self) -> None:
        assert self.charge_paisa > 0, self.charge_paisa


def _account_key(kind: str, env: str, code: str) -> tuple[str, str, str, str]:
    return ("account", kind, env, code)


def remembered_account(memo: dict[Any, Any], kind: str, env: str, code: str) -> int | None:
    """The id of a committed account seen before (see ensure_account), without a query."""
    known = memo.get(_account_key(kind, env, code))
    return None if known is None else int(known)


async def ensure_account(
    tx: Tx, kind: str, env: str, code: str, merchant_id: int | None = None
) -> int:
    known = remembered_account(tx.memo, kind, env, code)
    if known is not None:
        return known
    key = _account_key(kind, env, code)
    row = await tx.fetchrow(
        "SELECT id FROM accounts WHERE kind = $1 AND env = $2 AND code = $3",
        kind,
        env,
        code,
    )
    if row is not None:
        if key not in tx.created_here:  # committed: its id never changes
            tx.memo[key] = int(row["id"])
        return int(row["id"])
    row = await tx.fetchrow(
        "INSERT INTO accounts (kind, env, code, merchant_id) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (kind, env, code) DO UPDATE SET code = EXCLUDED.code RETURNING id",
        kind,
        env,
        code,
        merchant_id,
    )
    assert row is not None
    tx.created_here.add(key)
    return int(row["id"])


async def merchant_account(tx: Tx, merchant_id: int, env: str) -> int:
    return await ensure_account(tx, "merchant", env, merchant_code(merchant_id), merchant_id)


async def balance(tx: Tx, account_id: int) -> Balance:
    row = await tx.fetchrow(
        "SELECT balance_paisa, held_paisa, consumed_paisa FROM accounts WHERE id = $1",
        account_id,
    )
    assert row is not None, account_id
    return Balance(
        available_paisa=int(row["balance_paisa"]) - int(row["held_paisa"]),
        held_paisa=int(row["held_paisa"]),
        consumed_paisa=int(row["consumed_paisa"]),
    )


async def _insert_transfer(
    tx: Tx,
    kind: str,
    debit_id: int,
    credit_id: int,
    amount_paisa: int,
    *,
    pending_id: int | None = None,
    payment_id: int | None = None,
    note: str | None = None,
) -> int:
    row = await tx.fetchrow(
        "INSERT INTO transfers (kind, debit_account_id, credit_account_id, amount_paisa,"
        " pending_id, payment_id, note, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " RETURNING id",
        kind,
        debit_id,
        credit_id,
        amount_paisa,
        pending_id,
        payment_id,
        note,
        now_ms(),
    )
    assert row is not None
    return int(row["id"])


async def _debit(
    tx: Tx, account_id: int, amount_paisa: int, *, release: bool, consumed_paisa: int
) -> int:
    """Take amount off an account's balance; `release` also drops its hold of it. A
    merchant's available credits never go below zero (InsufficientCredits). Returns the
    account's available balance after."""
    row = await tx.fetchrow(
        "UPDATE accounts SET balance_paisa = balance_paisa - $2,"
        " held_paisa = held_paisa - $3,"
        " consumed_paisa = consumed_paisa + CASE WHEN kind = 'merchant' THEN $5 ELSE 0 END"
        " WHERE id = $1 AND (kind <> 'merchant' OR balance_paisa - held_paisa >= $4)"
        " RETURNING balance_paisa - held_paisa AS available",
        account_id,
        amount_paisa,
        amount_paisa if release else 0,
        0 if release else amount_paisa,
        consumed_paisa,
    )
    if row is None:
        raise InsufficientCredits()
    return int(row["available"])


async def _credit(tx: Tx, account_id: int, amount_paisa: int, *, consumed_paisa: int = 0) -> int:
    row = await tx.fetchrow(
        "UPDATE accounts SET balance_paisa = balance_paisa + $2,"
        " consumed_paisa = consumed_paisa + CASE WHEN kind = 'merchant' THEN $3 ELSE 0 END"
        " WHERE id = $1 RETURNING balance_paisa - held_paisa AS available",
        account_id,
        amount_paisa,
        consumed_paisa,
    )
    assert row is not None, account_id
    return int(row["available"])


async def _move(
    tx: Tx,
    debit_id: int,
    credit_id: int,
    amount_paisa: int,
    *,
    release: bool,
    consumed_paisa: int = 0,
    hot: str,
) -> int:
    """Post amount from debit to credit; `release` also drops the debit's hold of it.
    consumed_paisa is what the merchant on either side has spent by it (negative for a
    refund), kept in the same row update so each balance row is written once.

    `hot` ("debit" or "credit") names the merchant's side, updated last: every
    transaction locks merchant rows after any other account row, so two transfers never
    wait on each other in opposite orders, and the hot row stays locked the least.
    Returns the hot row's available balance after the move."""
    assert amount_paisa > 0
    assert debit_id != credit_id
    assert hot in ("debit", "credit")

    async def debit() -> int:
        return await _debit(
            tx, debit_id, amount_paisa, release=release, consumed_paisa=max(consumed_paisa, 0)
        )

    async def credit() -> int:
        return await _credit(tx, credit_id, amount_paisa, consumed_paisa=min(consumed_paisa, 0))

    if hot == "debit":
        await credit()
        return await debit()
    await debit()
    return await credit()


async def transfer(
    tx: Tx,
    debit_id: int,
    credit_id: int,
    amount_paisa: int,
    *,
    payment_id: int | None = None,
    note: str | None = None,
) -> int:
    """A transfer posted at once (credit loads, refunds). Raises InsufficientCredits; then
    nothing is written. Loads credit a merchant, whose row is updated last."""
    await _move(tx, debit_id, credit_id, amount_paisa, release=False, hot="credit")
    return await _insert_transfer(
        tx,
        "single",
        debit_id,
        credit_id,
        amount_paisa,
        payment_id=payment_id,
        note=note,
    )


async def open_pending(
    tx: Tx, debit_id: int, credit_id: int, amount_paisa: int, payment_id: int
) -> int:
    """The pending transfer of a hold, before its balance row is touched (see reserve)."""
    assert amount_paisa > 0
    return await _insert_transfer(
        tx, "pending", debit_id, credit_id, amount_paisa, payment_id=payment_id
    )


async def reserve(tx: Tx, debit_id: int, amount_paisa: int) -> None:
    """Hold credits on the debit account: the last statement of a hold's transaction, so
    the hot balance row stays locked for the shortest time. Raises InsufficientCredits;
    the caller's transaction then rolls back, and nothing is held."""
    changed = await tx.execute(
        "UPDATE accounts SET held_paisa = held_paisa + $2"
        " WHERE id = $1 AND balance_paisa - held_paisa >= $2",
        debit_id,
        amount_paisa,
    )
    if changed != 1:
        raise InsufficientCredits()


class Closed(NamedTuple):
    transfer_id: int
    available_paisa: int  # the debit account's (the merchant's), after the close


class _Hold(NamedTuple):
    """A pending transfer as its closing transfer copied it."""

    closing_id: int
    debit_id: int
    credit_id: int
    amount_paisa: int
    payment_id: int | None


# A close: the post or void ($2) of pending transfer $1, stamped $3, copying its accounts
# and amount; a fee's transfer (ISP to fees account $4, the charge $5, note $6) after it.
_CLOSE = (
    "INSERT INTO transfers (kind, debit_account_id, credit_account_id, amount_paisa,"
    " pending_id, payment_id, note, created_ms)"
    " SELECT CAST($2 AS TEXT), debit_account_id, credit_account_id, amount_paisa, id,"
    " payment_id, NULL, CAST($3 AS BIGINT) FROM transfers WHERE id = $1 AND kind = 'pending'"
)
_AND_FEE = (
    " UNION ALL SELECT 'single', credit_account_id, CAST($4 AS BIGINT), CAST($5 AS BIGINT),"
    " NULL, payment_id, CAST($6 AS TEXT), CAST($3 AS BIGINT)"
    " FROM transfers WHERE id = $1 AND kind = 'pending'"
)
_CLOSED = " RETURNING id, debit_account_id, credit_account_id, amount_paisa, payment_id, pending_id"


async def _close(tx: Tx, kind: str, pending_id: int, fee: Fee | None = None) -> _Hold:
    """Write the post or void of a pending transfer, copying its accounts and amount in
    the same statement. The unique pending_id makes a second close fail. A fee's
    transfer (ISP to fees, FEE_NOTE) is written by the same statement."""
    if fee is None:
        row = await tx.fetchrow(_CLOSE + _CLOSED, pending_id, kind, now_ms())
    else:
        rows = await tx.fetch(
            _CLOSE + _AND_FEE + _CLOSED,
            pending_id,
            kind,
            now_ms(),
            fee.account_id,
            fee.charge_paisa,
            FEE_NOTE,
        )
        assert len(rows) in (0, 2), rows
        row = next((r for r in rows if r["pending_id"] is not None), None)
    assert row is not None, f"no pending transfer {pending_id}"
    return _Hold(
        int(row["id"]),
        int(row["debit_account_id"]),
        int(row["credit_account_id"]),
        int(row["amount_paisa"]),
        None if row["payment_id"] is None else int(row["payment_id"]),
    )


async def post(
    tx: Tx, pending_id: int, fee: Fee | None = None, *, one_writer: bool = False
) -> Closed:
    """Capture a hold. With a fee (a charged payment, whose hold is its amount and its
    charge), the charge goes on from the hold's credit account (the ISP's) to the fees
    account, as a transfer of its own, before the merchant's row is touched: the ISP's
    row, the fees row, the merchant's, in that order, as a refund takes them."""
    transfer_id, debit_id, credit_id, amount_paisa, payment_id = await _close(
        tx, "post", pending_id, fee
    )
    if fee is None:
        available = await _move(
            tx,
            debit_id,
            credit_id,
            amount_paisa,
            release=True,
            consumed_paisa=amount_paisa,
            hot="debit",
        )
        return Closed(transfer_id, available)
    assert fee.charge_paisa < amount_paisa, (pending_id, fee)
    assert payment_id is not None, pending_id
    # The ISP's row written once: the hold in, the charge out.
    if one_writer:
        # No row locks to take in order: both rows in one statement.
        changed = await tx.execute(
            "UPDATE accounts SET balance_paisa = balance_paisa"
            " + CASE WHEN id = $1 THEN $2 ELSE $4 END WHERE id IN ($1, $3)",
            credit_id,
            amount_paisa - fee.charge_paisa,
            fee.account_id,
            fee.charge_paisa,
        )
        assert changed == 2, (credit_id, fee)
    else:
        await _credit(tx, credit_id, amount_paisa - fee.charge_paisa)
        await _credit(tx, fee.account_id, fee.charge_paisa)
    available = await _debit(tx, debit_id, amount_paisa, release=True, consumed_paisa=amount_paisa)
    return Closed(transfer_id, available)


async def void(tx: Tx, pending_id: int) -> Closed:
    """Release a hold in full."""
    transfer_id, debit_id, _, amount_paisa, _ = await _close(tx, "void", pending_id)
    row = await tx.fetchrow(
        "UPDATE accounts SET held_paisa = held_paisa - $2 WHERE id = $1 AND held_paisa >= $2"
        " RETURNING balance_paisa - held_paisa AS available",
        debit_id,
        amount_paisa,
    )
    assert row is not None, pending_id
    return Closed(transfer_id, int(row["available"]))


async def refund(
    tx: Tx,
    isp_account_id: int,
    merchant_account_id: int,
    amount_paisa: int,
    payment_id: int,
    note: str,
    *,
    fee: Fee | None = None,
) -> int:
    """Give a merchant back money an ISP reversed after a Success: a new transfer, no edit.
    With a fee, the payment's service charge comes back too, from the fees account, in a
    transfer of its own (note FEE_REFUND_NOTE). Rows are taken as a charged post takes
    them: the ISP's, the fees, the merchant's last. Returns the amount's transfer."""
    transfer_id = await _insert_transfer(
        tx,
        "single",
        isp_account_id,
        merchant_account_id,
        amount_paisa,
        payment_id=payment_id,
        note=note,
    )
    if fee is None:
        await _move(
            tx,
            isp_account_id,
            merchant_account_id,
            amount_paisa,
            release=False,
            consumed_paisa=-amount_paisa,
            hot="credit",
        )
        return transfer_id
    await _insert_transfer(
        tx,
        "single",
        fee.account_id,
        merchant_account_id,
        fee.charge_paisa,
        payment_id=payment_id,
        note=FEE_REFUND_NOTE,
    )
    back_paisa = amount_paisa + fee.charge_paisa
    await _debit(tx, isp_account_id, amount_paisa, release=False, consumed_paisa=0)
    await _debit(tx, fee.account_id, fee.charge_paisa, release=False, consumed_paisa=0)
    await _credit(tx, merchant_account_id, back_paisa, consumed_paisa=-back_paisa)
    return transfer_id
