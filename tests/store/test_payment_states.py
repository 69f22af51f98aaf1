"""The payments table admits only the states a payment is written in (domain.State):
migration 0006 took out Error and Expired, which nothing ever wrote."""

from __future__ import annotations

import pytest

from bhuktani.domain import State
from bhuktani.store import CheckViolation, Database

COLUMNS = (
    "id, merchant_id, env, reference, service, isp, username, duration_code, days,"
    " amount_paisa, state, created_ms, updated_ms"
)


async def insert(db: Database, payment_id: int, state: str) -> None:
    async with db.transaction() as tx:
        await tx.execute(
            f"INSERT INTO payments ({COLUMNS}) VALUES ($1, 1, 'test', $2, 'svc', 'isp', 'u',"
            " '1', 30, 100, $3, 0, 0)",
            payment_id,
            f"state-{payment_id}",
            state,
        )


@pytest.mark.parametrize("state", list(State))
async def test_every_state_of_the_domain_is_admitted(db: Database, state: State) -> None:
    payment_id = 9_000_000_000 + list(State).index(state)
    await insert(db, payment_id, state)
    async with db.transaction() as tx:
        await tx.execute("DELETE FROM payments WHERE id = $1", payment_id)


@pytest.mark.parametrize("state", ["Error", "Expired", "success", ""])
async def test_a_state_nothing_writes_is_refused(db: Database, state: str) -> None:
    with pytest.raises(CheckViolation):
        await insert(db, 9_100_000_000 + len(state), state)
