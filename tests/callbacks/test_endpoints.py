"""Webhook endpoints per environment and their secrets: verified with the
`standardwebhooks` library as a merchant does, across a rotation, with changes made while
the deliverer runs; and the migration that made them, on both engines."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bhuktani.api.app import create_app
from bhuktani.callbacks import outbox, signing
from bhuktani.domain import Env
from bhuktani.merchants import service as merchants
from bhuktani.store import Database
from bhuktani.store.migrate import alembic_config, upgrade
from tests.conftest import DATABASES, PG_ENV, _admin, _with_database
from tests.receiver import Received, Receiver, receiving
from tests.support import KEY, eventually, fast_settings

DAY_MS = 24 * 3600 * 1000


def verify(secret: str | bytes, request: Received) -> None:
    Webhook(secret).verify(request.body, request.headers, json_parse=False)


def verifies(secret: str | bytes, request: Received) -> bool:
    try:
        verify(secret, request)
    except WebhookVerificationError:
        return False
    return True


class Running:
    """The app with its deliverer running, and a way to make TEST payments that end in a
    callback (flaky-user: Processing, then Success)."""

    def __init__(self, http: httpx.AsyncClient, db: Database) -> None:
        self.http = http
        self.db = db

    async def pay(self, token: str) -> int:
        response = await self.http.post(
            "/api/servicegroup/commit/arrownet/",
            json={
                "token": token,
                "username": "flaky-user",
                "amount": "1695.00",
                "duration": 1,
                "reference": f"ep-{uuid.uuid4().hex[:12]}",
            },
        )
        body = response.json()
        assert body["state"] == "Processing", body
        return int(body["id"])


@pytest.fixture
async def running(db_url: str) -> AsyncIterator[Running]:
    settings = fast_settings(db_url, callback_backoff_s=[0.1] * 30, callback_poll_s=0.02)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield Running(http, app.state.gateway.db)


async def received(receiver: Receiver, count: int, timeout_s: float = 15) -> list[Received]:
    async def check() -> bool:
        return len(receiver.received) >= count

    await eventually(check, timeout_s=timeout_s)
    return receiver.received


def test_a_signature_is_the_libraries_and_verifies_with_either_secret_in_force() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    body = b'--b\r\nContent-Disposition: form-data; name="status"\r\n\r\nSuccess\r\n--b--\r\n'
    timestamp_s = int(datetime.now(tz=UTC).timestamp())
    headers = signing.headers("evt-1", timestamp_s, body, [new, old])
    assert headers["webhook-id"] == "evt-1"
    assert headers["webhook-timestamp"] == str(timestamp_s)
    first, second = headers["webhook-signature"].split(" ")
    assert first.startswith("v1,") and second.startswith("v1,")
    # The specification's signature, computed by hand.
    key = base64.b64decode(new.removeprefix("whsec_"))
    mac = hmac.new(key, f"evt-1.{timestamp_s}.".encode() + body, hashlib.sha256).digest()
    assert first == "v1," + base64.b64encode(mac).decode()
    request = Received(headers, body)
    assert verifies(new, request) and verifies(old, request)
    assert not verifies(signing.new_secret(), request)
    assert not verifies(new, Received(headers, body + b" "))
    assert not verifies(new, Received({**headers, "webhook-id": "evt-2"}, body))


def test_the_previous_secret_signs_until_its_overlap_ends() -> None:
    rotated_at_ms = 1_800_000_000_000
    until_ms = rotated_at_ms + signing.ROTATION_OVERLAP_MS
    assert signing.ROTATION_OVERLAP_MS == DAY_MS
    assert signing.in_force("new", "old", until_ms, rotated_at_ms) == ["new", "old"]
    assert signing.in_force("new", "old", until_ms, until_ms - 1) == ["new", "old"]
    assert signing.in_force("new", "old", until_ms, until_ms) == ["new"]
    assert signing.in_force("new", None, None, until_ms) == ["new"]


@pytest.mark.parametrize(
    "secret",
    ["whsec_", "whsec_abc-def_ghi", "sk_" + "A" * 44, "whsec_not base64!"],
)
def test_a_malformed_secret_is_refused_rather_than_signing_with_another_key(secret: str) -> None:
    with pytest.raises(signing.BadSecret):
        signing.key_of(secret)


async def test_each_environment_has_its_own_secret_and_body_env(running: Running) -> None:
    async with receiving() as receiver:
        merchant = await merchants.create(
            running.db, "two envs", key=KEY, callback_url=receiver.url, test_credits_paisa=10**8
        )
        assert set(merchant.callback_secrets) == {Env.TEST, Env.LIVE}
        await running.pay(merchant.test_token)
        (request,) = await received(receiver, 1)
        assert request.fields()["env"] == "test"
        verify(merchant.callback_secrets[Env.TEST], request)
        assert not verifies(merchant.callback_secrets[Env.LIVE], request)


async def test_a_rotation_signs_with_both_secrets_for_a_day_then_only_the_new(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with receiving() as receiver:
        merchant = await merchants.create(
            running.db, "rotating", key=KEY, callback_url=receiver.url, test_credits_paisa=10**8
        )
        old = merchant.callback_secrets[Env.TEST]
        await running.pay(merchant.test_token)
        (before,) = await received(receiver, 1)
        verify(old, before)
        assert len(before.headers["webhook-signature"].split(" ")) == 1

        # Rotated while the deliverer runs: the next callback is signed with both.
        new = await merchants.rotate_callback_secret(running.db, merchant.merchant_id, Env.TEST)
        assert new is not None and new != old
        await running.pay(merchant.test_token)
        during = (await received(receiver, 2))[1]
        assert len(during.headers["webhook-signature"].split(" ")) == 2
        verify(new, during)
        verify(old, during)

        # A day and a minute later, by the outbox's clock: only the new secret signs.
        real_now_ms = outbox.now_ms
        monkeypatch.setattr(outbox, "now_ms", lambda: real_now_ms() + DAY_MS + 60_000)
        await running.pay(merchant.test_token)
        after = (await received(receiver, 3))[2]
        assert len(after.headers["webhook-signature"].split(" ")) == 1
        verify(new, after)
        assert not verifies(old, after)


async def test_a_pending_callback_goes_to_the_url_set_while_it_waits(running: Running) -> None:
    async with receiving() as first, receiving() as second:
        first.fail_first = 10**6
        merchant = await merchants.create(
            running.db, "moving", key=KEY, callback_url=first.url, test_credits_paisa=10**8
        )
        await running.pay(merchant.test_token)
        await received(first, 2)
        assert await merchants.set_callback_url(
            running.db, merchant.merchant_id, Env.TEST, second.url
        )
        (moved,) = await received(second, 1)
        assert moved.headers["webhook-id"] == first.received[0].headers["webhook-id"]
        verify(merchant.callback_secrets[Env.TEST], moved)
        await asyncio.sleep(0.3)
        assert len(second.received) == 1, "delivered once, on the 2xx"


async def test_a_pending_callback_whose_url_was_unset_waits_for_a_new_one(
    running: Running,
) -> None:
    async with receiving() as first, receiving() as second:
        first.fail_first = 10**6
        merchant = await merchants.create(
            running.db, "pausing", key=KEY, callback_url=first.url, test_credits_paisa=10**8
        )
        payment_id = await running.pay(merchant.test_token)
        await received(first, 1)
        assert await merchants.set_callback_url(running.db, merchant.merchant_id, Env.TEST, None)
        sent_to_first = len(first.received)

        async def unsent_attempts() -> list[Any]:
            rows = await running.db.read(
                lambda tx: tx.fetch(
                    "SELECT a.error FROM callback_attempts a JOIN callbacks c"
                    " ON c.id = a.callback_id WHERE c.payment_id = $1 AND a.error = $2",
                    payment_id,
                    "no callback URL",
                )
            )
            return list(rows) if len(rows) >= 2 else []

        await eventually(unsent_attempts, timeout_s=10)
        assert len(first.received) <= sent_to_first + 1, "nothing sent once the URL was unset"
        # No URL: a payment made now queues no callback at all.
        quiet = await running.pay(merchant.test_token)

        async def quiet_is_final() -> bool:
            row = await running.db.read(
                lambda tx: tx.fetchrow("SELECT state FROM payments WHERE id = $1", quiet)
            )
            return row is not None and row["state"] != "Processing"

        await eventually(quiet_is_final, timeout_s=10)
        assert await merchants.set_callback_url(
            running.db, merchant.merchant_id, Env.TEST, second.url
        )
        (resumed,) = await received(second, 1)
        assert resumed.fields()["response_id"] == str(payment_id)
        rows = await running.db.read(
            lambda tx: tx.fetch("SELECT id FROM callbacks WHERE payment_id = $1", quiet)
        )
        assert list(rows) == []


# The migration, on fresh databases of both engines.

OLD_SECRET = "whsec_" + "Ab-_" * 8  # as 0002 issued them: urlsafe base64


@pytest.fixture(params=DATABASES)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.db'}"
        return
    admin_url = os.environ[PG_ENV]
    name = f"bhuktani_mig_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(admin_url, name)
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _run_sql(url: str, statements: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Plain SQL on a database of either engine, from synchronous test code."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url)
        out: list[Any] = []
        with engine.begin() as conn:
            for sql, args in statements:
                result = conn.execute(sa.text(sql), args)
                out.append([tuple(r) for r in result] if result.returns_rows else None)
        engine.dispose()
        return out

    async def on_pg() -> list[Any]:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            found: list[Any] = []
            for sql, args in statements:
                names = list(args)
                text = sql
                for n, key in enumerate(names, start=1):
                    text = text.replace(f":{key}", f"${n}")
                values = [args[k] for k in names]
                if sql.lstrip().upper().startswith("SELECT"):
                    found.append([tuple(r) for r in await conn.fetch(text, *values)])
                else:
                    await conn.execute(text, *values)
                    found.append(None)
            return found
        finally:
            await conn.close()

    return asyncio.run(on_pg())


def test_migration_0004_moves_url_and_secret_to_both_environments_and_back(
    fresh_url: str,
) -> None:
    from alembic import command

    upgrade(fresh_url, "0003")
    insert = (
        "INSERT INTO merchants (id, name, services, callback_url, callback_secret, created_ms)"
        " VALUES (:id, :name, 'all', :url, :secret, 0)"
    )
    _run_sql(
        fresh_url,
        [
            (
                insert,
                {"id": 1, "name": "old", "url": "https://old.example/cb", "secret": OLD_SECRET},
            ),
            (insert, {"id": 2, "name": "unsigned", "url": None, "secret": None}),
        ],
    )
    upgrade(fresh_url)
    (rows,) = _run_sql(
        fresh_url,
        [
            (
                "SELECT merchant_id, env, url, secret, previous_secret FROM webhook_endpoints"
                " ORDER BY merchant_id, env",
                {},
            )
        ],
    )
    by_key = {(int(r[0]), str(r[1])): r for r in rows}
    assert sorted(by_key) == [(1, "live"), (1, "test"), (2, "live"), (2, "test")]
    for env in ("test", "live"):
        _, _, url, secret, previous = by_key[(1, env)]
        assert url == "https://old.example/cb"
        assert previous is None
        # The same key as before: what the old secret signs, the new spelling verifies.
        assert signing.key_of(secret) == OLD_SECRET.encode()
        body = b"body"
        headers = signing.headers("evt", int(datetime.now(tz=UTC).timestamp()), body, [secret])
        verify(OLD_SECRET.encode(), Received(headers, body))
        verify(secret, Received(headers, body))
    unsigned = [by_key[(2, env)] for env in ("test", "live")]
    assert all(row[2] is None for row in unsigned)
    assert unsigned[0][3] != unsigned[1][3], "a merchant without a secret gets one per env"
    assert all(len(signing.key_of(row[3])) == 32 for row in unsigned)

    command.downgrade(alembic_config(fresh_url), "0003")
    (restored,) = _run_sql(
        fresh_url,
        [("SELECT id, callback_url, callback_secret FROM merchants ORDER BY id", {})],
    )
    assert tuple(restored[0]) == (1, "https://old.example/cb", OLD_SECRET)
    assert restored[1][1] is None
    upgrade(fresh_url)
