"""merchants.service: a token revoked by its id, as the dashboard knows it."""

from __future__ import annotations

from typing import Any

from bhuktani.merchants import service as merchants
from bhuktani.store import Database
from tests.support import new_merchant


async def token_rows(db: Database, merchant_id: int) -> list[dict[str, Any]]:
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT id, env, hint, status, revoked_ms FROM tokens WHERE merchant_id = $1"
            " ORDER BY id",
            merchant_id,
        )
    )
    return [dict(row) for row in rows]


async def revocations(db: Database, merchant_id: int) -> list[dict[str, Any]]:
    rows = await db.read(
        lambda tx: tx.fetch(
            "SELECT operator, env, subject FROM audit_log"
            " WHERE action = 'token.revoke' AND merchant_id = $1 ORDER BY id",
            merchant_id,
        )
    )
    return [dict(row) for row in rows]


async def test_a_token_is_revoked_by_its_id_once_and_audited(db: Database) -> None:
    merchant = await new_merchant(db)
    test_token = next(t for t in await token_rows(db, merchant.merchant_id) if t["env"] == "test")

    hint = await merchants.revoke_merchant_token(
        db, merchant.merchant_id, int(test_token["id"]), operator="web:staff@example.com"
    )

    assert hint == test_token["hint"]
    after = {int(t["id"]): t for t in await token_rows(db, merchant.merchant_id)}
    assert after[int(test_token["id"])]["status"] == "revoked"
    assert after[int(test_token["id"])]["revoked_ms"] is not None
    assert [t["status"] for t in after.values() if t["env"] == "live"] == ["active"]
    assert await revocations(db, merchant.merchant_id) == [
        {"operator": "web:staff@example.com", "env": "test", "subject": hint}
    ]


async def test_a_second_revocation_changes_nothing(db: Database) -> None:
    merchant = await new_merchant(db)
    token_id = int((await token_rows(db, merchant.merchant_id))[0]["id"])
    assert await merchants.revoke_merchant_token(db, merchant.merchant_id, token_id, operator="a")
    before = await token_rows(db, merchant.merchant_id)

    again = await merchants.revoke_merchant_token(db, merchant.merchant_id, token_id, operator="b")

    assert again is None
    assert await token_rows(db, merchant.merchant_id) == before
    assert [e["operator"] for e in await revocations(db, merchant.merchant_id)] == ["a"]


async def test_another_merchants_token_id_changes_nothing(db: Database) -> None:
    owner = await new_merchant(db, name="owner")
    other = await new_merchant(db, name="other")
    owners_token_id = int((await token_rows(db, owner.merchant_id))[0]["id"])
    before = await token_rows(db, owner.merchant_id)

    refused = await merchants.revoke_merchant_token(
        db, other.merchant_id, owners_token_id, operator="other staff"
    )

    assert refused is None
    assert await token_rows(db, owner.merchant_id) == before
    assert await revocations(db, owner.merchant_id) == []
    assert await revocations(db, other.merchant_id) == []
