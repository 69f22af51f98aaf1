"""The operator's commands, run as an operator runs them: `python -m bhuktani ...` in a
process of its own, the database named by BHUKTANI_DATABASE_URL. The API's answers are
read through the `client` fixture, an app on the same database."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory

from bhuktani.services import registry
from bhuktani.store import Database
from bhuktani.store.migrate import alembic_config
from tests.conftest import AppClient
from tests.support import Server, assert_books_balance, new_merchant

COMMANDS = (
    "serve",
    "migrate",
    "merchant",
    "token",
    "credits",
    "worker",
    "isp-sim",
    "demo",
    "statement",
    "charges",
    "disputes",
    "settle",
    "audit",
)
SUBCOMMANDS = (
    ("merchant", "create"),
    ("merchant", "list"),
    ("merchant", "disable"),
    ("merchant", "enable"),
    ("merchant", "set-callback"),
    ("merchant", "rotate-secret"),
    ("token", "revoke"),
    ("token", "create"),
    ("credits", "load"),
    ("credits", "requests"),
    ("credits", "approve"),
    ("credits", "reject"),
    ("merchant", "set-low-balance"),
    ("charges", "set"),
    ("charges", "clear"),
    ("charges", "list"),
    ("disputes", "list"),
    ("disputes", "resolve"),
    ("payment", "list"),
    ("payment", "show"),
    ("callbacks", "list"),
)
TEST_TOKEN = re.compile(r"^TEST:[A-Za-z0-9_-]{20}$")
PRINTED_TEST_TOKEN = re.compile(r"TEST:[A-Za-z0-9_-]{20}")
MISSING_MERCHANT_ID = "987654321"


def cli_env(db_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BHUKTANI_")}
    if db_url is not None:
        env["BHUKTANI_DATABASE_URL"] = db_url
    return env


def run_cli(db_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bhuktani", *args],
        env=cli_env(db_url),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def bhuktani(db_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the in-process app (its reconciler included) keeps running meanwhile.
    return await asyncio.to_thread(run_cli, db_url, *args)


async def ok(db_url: str | None, *args: str) -> str:
    done = await bhuktani(db_url, *args)
    assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def refused_cleanly(done: subprocess.CompletedProcess[str]) -> bool:
    """A non-zero exit with a message, not a crash."""
    return done.returncode != 0 and "Traceback" not in done.stderr + done.stdout


async def create_merchant(db_url: str, *options: str) -> dict[str, Any]:
    name = f"shop-{uuid.uuid4().hex[:8]}"
    out = await ok(db_url, "merchant", "create", name, "--json", *options)
    created: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    created["name"] = name
    return created


async def balance(client: AppClient, token: str) -> dict[str, Any]:
    response = await client.get("/api/balance", headers={"Authorization": f"Token {token}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def arrownet_details(client: AppClient, token: str) -> tuple[int, dict[str, Any]]:
    response = await client.post(
        "/api/servicegroup/details/arrownet/", json={"token": token, "username": "Pradhanang"}
    )
    return response.status_code, response.json()


def db_of(client: AppClient) -> Database:
    return client.gateway.db


def test_help_lists_every_command() -> None:
    done = run_cli(None, "--help")
    assert done.returncode == 0, done.stderr
    listed = set(re.findall(r"^\W*([a-z][a-z-]+)\s", done.stdout, flags=re.MULTILINE))
    for command in COMMANDS:
        assert command in listed, f"{command} not in --help:\n{done.stdout}"


def test_every_command_and_subcommand_has_working_help() -> None:
    asked = [(command,) for command in COMMANDS] + list(SUBCOMMANDS)
    running = [
        (
            args,
            subprocess.Popen(
                [sys.executable, "-m", "bhuktani", *args, "--help"],
                env=cli_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for args in asked
    ]
    for args, process in running:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"{args} --help: {err}"
        assert "Usage:" in out, f"{args} --help:\n{out}"
        assert " ".join(args) in out, f"{args} --help names the command:\n{out}"


async def test_merchant_create_json_prints_id_and_both_tokens_on_its_last_line(
    db_url: str,
) -> None:
    first, second = await asyncio.gather(create_merchant(db_url), create_merchant(db_url))
    for created in (first, second):
        assert set(created) == {
            "merchant_id",
            "test_token",
            "live_token",
            "callback_secrets",
            "name",
        }
        secrets = created["callback_secrets"]
        assert set(secrets) == {"test", "live"}
        assert secrets["test"] != secrets["live"]
        for secret in secrets.values():
            assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret), secret
        assert type(created["merchant_id"]) is int
        assert TEST_TOKEN.match(created["test_token"]), created["test_token"]
        live = created["live_token"]
        assert isinstance(live, str) and len(live) >= 20, live
        assert not live.startswith("TEST:")
        assert re.fullmatch(r"[A-Za-z0-9_-]+", live), live
    # Random: no two merchants, no two tokens alike.
    assert first["merchant_id"] != second["merchant_id"]
    tokens = {first["test_token"], first["live_token"], second["test_token"], second["live_token"]}
    assert len(tokens) == 4


async def test_merchant_create_defaults_to_a_million_test_credits_and_no_live_credits(
    db_url: str, client: AppClient
) -> None:
    created = await create_merchant(db_url)
    assert await balance(client, created["test_token"]) == {
        "credits_consumed": 0.0,
        "credits_available": 1_000_000.0,
    }
    assert await balance(client, created["live_token"]) == {
        "credits_consumed": 0.0,
        "credits_available": 0.0,
    }
    await assert_books_balance(db_of(client))


async def test_merchant_create_respects_credits_services_and_callback_url(
    db_url: str, client: AppClient
) -> None:
    created = await create_merchant(
        db_url,
        "--test-credits",
        "5",
        "--credits",
        "7.50",
        "--services",
        "arrownet",
        "--callback-url",
        "https://example.com/cb",
    )
    assert (await balance(client, created["test_token"]))["credits_available"] == 5.0
    assert (await balance(client, created["live_token"]))["credits_available"] == 7.5
    # Arrownet is enabled, HashCNet V2 is not.
    assert (await arrownet_details(client, created["test_token"]))[0] == 200
    hashcnet = await client.post(
        "/api/servicegroup/details/hashcnet-v2/",
        json={
            "token": created["test_token"],
            "reference": "r-" + uuid.uuid4().hex[:8],
            "username": "jeetenaug4",
            "service_slug": "vns",
        },
    )
    assert hashcnet.status_code == 400
    assert hashcnet.json()["error_code"] == "1008"
    async with db_of(client).transaction() as tx:
        row = await tx.fetchrow(
            "SELECT name, services FROM merchants WHERE id = $1", created["merchant_id"]
        )
        callback_urls = await tx.fetch(
            "SELECT env, url FROM webhook_endpoints WHERE merchant_id = $1 ORDER BY env",
            created["merchant_id"],
        )
    assert row is not None
    assert row["name"] == created["name"]
    assert row["services"] == "arrownet"
    assert [(r["env"], r["url"]) for r in callback_urls] == [
        ("live", "https://example.com/cb"),
        ("test", "https://example.com/cb"),
    ]
    await assert_books_balance(db_of(client))


async def test_merchant_list_shows_a_created_merchant_and_its_credits(db_url: str) -> None:
    created = await create_merchant(db_url, "--test-credits", "5", "--credits", "7.50")
    out = await ok(db_url, "merchant", "list", "--all")
    rows = [line for line in out.splitlines() if created["name"] in line]
    assert len(rows) == 1, out
    cells = [cell.strip() for cell in re.split(r"[│┃|]", rows[0]) if cell.strip()]
    assert cells[0] == str(created["merchant_id"]), cells
    assert "5.00" in cells, cells
    assert "7.50" in cells, cells


async def test_merchant_disable_makes_its_tokens_answer_1006(
    db_url: str, client: AppClient
) -> None:
    merchant = await new_merchant(db_of(client))
    assert (await arrownet_details(client, merchant.test_token))[0] == 200

    await ok(db_url, "merchant", "disable", str(merchant.merchant_id))

    for token in (merchant.test_token, merchant.live_token):
        status, body = await arrownet_details(client, token)
        assert status == 400, body
        assert body["error_code"] == "1006", body


async def test_merchant_disable_of_a_missing_merchant_exits_non_zero(db_url: str) -> None:
    assert refused_cleanly(await bhuktani(db_url, "merchant", "disable", MISSING_MERCHANT_ID))


async def test_token_revoke_makes_the_token_answer_1003(db_url: str, client: AppClient) -> None:
    merchant = await new_merchant(db_of(client))

    await ok(db_url, "token", "revoke", merchant.test_token)

    status, body = await arrownet_details(client, merchant.test_token)
    assert status == 400, body
    assert body["error_code"] == "1003", body
    # The merchant's other token still works.
    assert (await balance(client, merchant.live_token))["credits_available"] == 0.0


async def test_token_revoke_of_an_unknown_token_exits_non_zero(db_url: str) -> None:
    assert refused_cleanly(await bhuktani(db_url, "token", "revoke", "TEST:" + "x" * 20))


async def loads_into(db: Database, merchant_id: int) -> list[Any]:
    """The single transfers into the merchant's accounts, with their debit account."""
    async with db.transaction() as tx:
        return list(
            await tx.fetch(
                "SELECT t.amount_paisa, f.kind AS debit_kind, f.env AS debit_env,"
                " m.env AS credit_env FROM transfers t"
                " JOIN accounts f ON f.id = t.debit_account_id"
                " JOIN accounts m ON m.id = t.credit_account_id"
                " WHERE t.kind = 'single' AND m.kind = 'merchant' AND m.merchant_id = $1"
                " ORDER BY t.id",
                merchant_id,
            )
        )


async def test_credits_load_is_a_ledger_transfer_from_the_funding_account(
    db_url: str, client: AppClient
) -> None:
    merchant = await new_merchant(db_of(client), test_rupees=5)
    before = await loads_into(db_of(client), merchant.merchant_id)

    await ok(db_url, "credits", "load", str(merchant.merchant_id), "100", "--env", "test")

    assert (await balance(client, merchant.test_token))["credits_available"] == 105.0
    assert (await balance(client, merchant.live_token))["credits_available"] == 0.0
    after = await loads_into(db_of(client), merchant.merchant_id)
    assert len(after) == len(before) + 1
    loaded = after[-1]
    assert int(loaded["amount_paisa"]) == 100_00
    assert loaded["debit_kind"] == "funding"
    assert loaded["debit_env"] == "test"
    assert loaded["credit_env"] == "test"
    await assert_books_balance(db_of(client))


async def test_credits_load_to_a_missing_merchant_exits_non_zero(
    db_url: str, client: AppClient
) -> None:
    done = await bhuktani(db_url, "credits", "load", MISSING_MERCHANT_ID, "100", "--env", "test")
    assert refused_cleanly(done), done
    async with db_of(client).transaction() as tx:
        row = await tx.fetchrow(
            "SELECT COUNT(*) AS n FROM accounts WHERE merchant_id = $1", int(MISSING_MERCHANT_ID)
        )
    assert row is not None
    assert int(row["n"]) == 0, "no account is made for a missing merchant"
    await assert_books_balance(db_of(client))


async def test_credits_load_of_an_invalid_amount_exits_non_zero_and_moves_nothing(
    db_url: str, client: AppClient
) -> None:
    merchant = await new_merchant(db_of(client), test_rupees=5)
    amounts = ("1.234", "abc", "-5", "0")
    # "--" ends the options, so that "-5" is read as the amount.
    runs = await asyncio.gather(
        *(
            bhuktani(
                db_url, "credits", "load", "--env", "test", "--", str(merchant.merchant_id), amount
            )
            for amount in amounts
        )
    )
    for amount, done in zip(amounts, runs, strict=True):
        assert refused_cleanly(done), (amount, done)
    assert (await balance(client, merchant.test_token))["credits_available"] == 5.0
    assert len(await loads_into(db_of(client), merchant.merchant_id)) == 1  # the opening credits


async def test_migrate_is_idempotent(db_url: str, client: AppClient) -> None:
    merchant = await new_merchant(db_of(client))
    for _ in range(2):
        await ok(db_url, "migrate")
    # The data survives, and the schema is still the head, recorded once.
    assert (await balance(client, merchant.test_token))["credits_available"] == 1_000_000.0
    heads = set(ScriptDirectory.from_config(alembic_config(db_url)).get_heads())
    async with db_of(client).transaction() as tx:
        versions = await tx.fetch("SELECT version_num FROM alembic_version")
    assert sorted(str(v["version_num"]) for v in versions) == sorted(heads)


async def demo_merchants(db: Database) -> list[int]:
    async with db.transaction() as tx:
        rows = await tx.fetch("SELECT id FROM merchants WHERE name = 'demo' ORDER BY id")
    return [int(row["id"]) for row in rows]


def curl_paths(out: str) -> set[str]:
    """The API paths of the printed curl commands."""
    return set(re.findall(r"curl [^\n]*?https?://[^/\s]+(/api/[^\s'\"?]*)", out))


async def paste(out: str, tmp_path: Path) -> list[dict[str, Any]]:
    """The printed commands (from the first "#" comment on), pasted into a shell as
    printed: the JSON answers."""
    pasted = out[out.index("\n#") + 1 :]
    script = tmp_path / "demo.sh"
    script.write_text(pasted)
    env = {**cli_env(), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    ran = await asyncio.to_thread(
        subprocess.run,
        ["bash", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    return [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]


async def test_demo_prints_a_test_token_and_curls_for_every_service(
    db_url: str, server: Server, db: Database, tmp_path: Path
) -> None:
    # Twice: what the first run paid once (a bill, a due, a plan sold once) pays again.
    for _ in range(2):
        out = await ok(db_url, "demo", "--base-url", server.base_url)
        tokens = set(PRINTED_TEST_TOKEN.findall(out))
        assert len(tokens) == 1, out
        # The server's log follows in the same terminal: the curls go to another one.
        assert out.rstrip().endswith("paste the curls into a second one."), out
        assert f"{server.base_url}/docs" in out and f"{server.base_url}/redoc" in out
        assert {
            "/api/servicegroup/details/hashcnet-v2/",
            "/api/servicegroup/commit/hashcnet-v2/",
            "/api/servicegroup/details/arrownet/",
            "/api/servicegroup/commit/arrownet/",
        } <= curl_paths(out), out
        assert {
            f"/api/servicegroup/{verb}/{group.slug}/"
            for group in registry.GROUPS
            for verb in ("details", "commit")
        } | {f"/api/use/{service.slug}/" for service in registry.SINGLE_STEP} <= curl_paths(out), (
            out
        )
        answers = await paste(out, tmp_path)
        assert len(answers) >= 4, answers
        for answer in answers:
            assert "error_code" not in answer, answer
        # Payments answer an id; details calls do not.
        paid = [a for a in answers if a.get("state") == "Success" and "id" in a]
        assert len(paid) == len(registry.GROUPS), "each service group's example payment succeeds"
        # The last look-up reads the last payment, a single-step one: it may still be Queued.
        queued = [a for a in answers if a.get("state") == "Queued" and "credits_consumed" in a]
        assert len(queued) == len(registry.SINGLE_STEP), "each single-step example is queued"
    await assert_books_balance(db)


async def test_demo_run_twice_keeps_one_demo_merchant(db_url: str, client: AppClient) -> None:
    first = await ok(db_url, "demo")
    merchants_after_first = await demo_merchants(db_of(client))
    second = await ok(db_url, "demo")

    assert len(merchants_after_first) == 1
    assert await demo_merchants(db_of(client)) == merchants_after_first
    # Each run prints a new TEST token of that one merchant, and both work.
    tokens = [PRINTED_TEST_TOKEN.findall(out)[0] for out in (first, second)]
    assert tokens[0] != tokens[1]
    for token in tokens:
        assert (await balance(client, token))["credits_available"] > 0


def test_the_served_app_freezes_its_start_up_and_collects_young_objects_less_often() -> None:
    from bhuktani.api import app as app_mod

    thresholds = gc.get_threshold()
    try:
        app_mod.serving_app()
        assert gc.get_threshold() == app_mod.SERVING_GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def endpoint_rows(db: Database, merchant_id: int) -> dict[str, dict[str, Any]]:
    async with db.transaction() as tx:
        found = await tx.fetch(
            "SELECT env, url, secret, previous_secret, previous_until_ms FROM webhook_endpoints"
            " WHERE merchant_id = $1",
            merchant_id,
        )
    return {str(r["env"]): dict(r) for r in found}


async def test_set_callback_sets_one_environment_and_none_unsets_it(
    db_url: str, client: AppClient
) -> None:
    created = await create_merchant(db_url, "--callback-url", "https://example.com/both")
    merchant_id = str(created["merchant_id"])
    out = await ok(
        db_url, "merchant", "set-callback", merchant_id, "https://t.example/cb", "--env", "test"
    )
    assert "https://t.example/cb" in out
    found = await endpoint_rows(db_of(client), created["merchant_id"])
    assert found["test"]["url"] == "https://t.example/cb"
    assert found["live"]["url"] == "https://example.com/both", "the other environment is untouched"

    await ok(db_url, "merchant", "set-callback", merchant_id, "none", "--env", "LIVE")
    found = await endpoint_rows(db_of(client), created["merchant_id"])
    assert found["live"]["url"] is None
    assert found["test"]["url"] == "https://t.example/cb"


async def test_set_callback_and_rotate_secret_require_a_known_env(db_url: str) -> None:
    created = await create_merchant(db_url)
    merchant_id = str(created["merchant_id"])
    for args in (
        ("set-callback", merchant_id, "https://t.example/cb"),
        ("set-callback", merchant_id, "https://t.example/cb", "--env", "staging"),
        ("rotate-secret", merchant_id),
        ("rotate-secret", merchant_id, "--env", "prod"),
    ):
        done = await bhuktani(db_url, "merchant", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "--env" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


async def test_set_callback_refuses_a_bad_url_and_a_missing_merchant(db_url: str) -> None:
    created = await create_merchant(db_url)
    bad = await bhuktani(
        db_url, "merchant", "set-callback", str(created["merchant_id"]), "ftp://x/", "--env", "test"
    )
    assert refused_cleanly(bad)
    missing = await bhuktani(
        db_url,
        "merchant",
        "set-callback",
        MISSING_MERCHANT_ID,
        "https://x.example/",
        "--env",
        "live",
    )
    assert refused_cleanly(missing)


async def test_rotate_secret_json_prints_the_new_secret_on_its_last_line_and_keeps_the_old(
    db_url: str, client: AppClient
) -> None:
    created = await create_merchant(db_url)
    merchant_id = created["merchant_id"]
    out = await ok(db_url, "merchant", "rotate-secret", str(merchant_id), "--env", "live", "--json")
    rotated = json.loads(out.strip().splitlines()[-1])
    assert set(rotated) == {"secret"}
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", rotated["secret"]), rotated
    found = await endpoint_rows(db_of(client), merchant_id)
    assert found["live"]["secret"] == rotated["secret"]
    assert found["live"]["previous_secret"] == created["callback_secrets"]["live"]
    day_ms = 24 * 3600 * 1000
    assert abs(found["live"]["previous_until_ms"] - (time.time() * 1000 + day_ms)) < 60_000
    assert found["test"]["secret"] == created["callback_secrets"]["test"], "TEST untouched"
    assert found["test"]["previous_secret"] is None

    plain = await ok(db_url, "merchant", "rotate-secret", str(merchant_id), "--env", "test")
    found = await endpoint_rows(db_of(client), merchant_id)
    assert found["test"]["secret"] in plain
    assert found["test"]["previous_secret"] == created["callback_secrets"]["test"]


async def test_rotate_secret_of_a_missing_merchant_exits_non_zero(db_url: str) -> None:
    done = await bhuktani(db_url, "merchant", "rotate-secret", MISSING_MERCHANT_ID, "--env", "test")
    assert refused_cleanly(done)


async def test_merchant_set_services_names_known_slugs_only(db_url: str, db: Database) -> None:
    made = await new_merchant(db)
    out = await ok(
        db_url, "merchant", "set-services", str(made.merchant_id), "arrownet, vianet-updated"
    )
    assert "arrownet,vianet-updated" in out
    unknown = await bhuktani(db_url, "merchant", "set-services", str(made.merchant_id), "nope")
    assert unknown.returncode == 2 and "nope" in unknown.stderr
    assert refused_cleanly(unknown)
    missing = await bhuktani(db_url, "merchant", "set-services", str(10**9), "all")
    assert missing.returncode == 1 and "no merchant" in missing.stderr
