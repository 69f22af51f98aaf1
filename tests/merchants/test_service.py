"""merchants.service: a token revoked by its id, as the dashboard knows it."""

from __future__ import annotations

from typing import Any

import pytest

from bhuktani import audit
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


def test_services_are_all_or_known_slugs_each_once() -> None:
    assert merchants.normal_services(" ALL ") == "all"
    assert merchants.normal_services("arrownet, hashcnet-v2,arrownet") == "arrownet,hashcnet-v2"
    for bad, says in (("", "Name the services"), ("arrownet,nope", "'nope'")):
        with pytest.raises(ValueError, match=says):
            merchants.normal_services(bad)


async def test_set_services_is_audited_and_refuses_an_unknown_merchant(db: Database) -> None:
    made = await new_merchant(db)
    assert await merchants.set_services(db, made.merchant_id, "arrownet", operator="ops")
    row = await db.read(
        lambda tx: tx.fetchrow("SELECT services FROM merchants WHERE id = $1", made.merchant_id)
    )
    assert row is not None and row["services"] == "arrownet"
    entries = await audit.listing(db, merchant_id=made.merchant_id)
    changed = [e for e in entries if e["action"] == "merchant.services"]
    assert changed and changed[0]["details"] == {"from": "all", "to": "arrownet"}
    assert not await merchants.set_services(db, 10**9, "all", operator="ops")
