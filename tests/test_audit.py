"""The audit log: every operator action on merchants and tokens leaves one entry, in the
action's own transaction, without a token or a secret in it; `bhuktani audit` lists the
entries newest first, filters them and pages on with --before."""

from __future__ import annotations

import getpass
import json
import re
import shlex
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from bhuktani import audit
from bhuktani.clock import NEPAL
from bhuktani.domain import Env
from bhuktani.merchants import service as merchants
from bhuktani.merchants import tokens
from bhuktani.store import Database, Row
from tests.cli.test_commands import (
    MISSING_MERCHANT_ID,
    bhuktani,
    create_merchant,
    ok,
    refused_cleanly,
)
from tests.support import KEY, new_merchant

DAY_MS = 24 * 3600 * 1000
NEPAL_OFFSET = timedelta(hours=5, minutes=45)


async def entries_of(db: Database, merchant_id: int, after_id: int = 0) -> list[Row]:
    async with db.transaction() as tx:
        return list(
            await tx.fetch(
                "SELECT id, at_ms, operator, action, merchant_id, env, subject, details_json"
                " FROM audit_log WHERE merchant_id = $1 AND id > $2 ORDER BY id",
                merchant_id,
                after_id,
            )
        )


async def last_id(db: Database) -> int:
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT COALESCE(MAX(id), 0) AS id FROM audit_log")
    assert row is not None
    return int(row["id"])


async def entry_count(db: Database) -> int:
    async with db.transaction() as tx:
        row = await tx.fetchrow("SELECT COUNT(*) AS n FROM audit_log")
    assert row is not None
    return int(row["n"])


def operator_name() -> str:
    return f"auditor-{uuid.uuid4().hex[:8]}"


def assert_no_secret_in(entries: list[Row], secrets: list[str]) -> None:
    for entry in entries:
        stored = f"{entry['subject']} {entry['details_json']}"
        for secret in secrets:
            assert secret not in stored, f"{secret!r} in audit entry {entry['id']}: {stored}"


async def test_merchant_create_leaves_one_entry_with_what_it_was_made_with_and_no_secret(
    db_url: str, db: Database
) -> None:
    operator = operator_name()
    started_ms = int(time.time() * 1000)
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
        "--operator",
        operator,
    )

    entries = await entries_of(db, created["merchant_id"])
    assert len(entries) == 1, entries
    entry = entries[0]
    assert entry["action"] == "merchant.create"
    assert entry["operator"] == operator
    assert entry["env"] is None
    assert entry["subject"] is None
    assert started_ms - 1000 <= int(entry["at_ms"]) <= int(time.time() * 1000)
    assert json.loads(entry["details_json"]) == {
        "name": created["name"],
        "services": "arrownet",
        "callback_url": "https://example.com/cb",
        "test_credits_paisa": 5_00,
        "live_credits_paisa": 7_50,
        "token_hints": {
            "test": tokens.hint(created["test_token"]),
            "live": tokens.hint(created["live_token"]),
        },
    }
    assert_no_secret_in(
        entries,
        [created["test_token"], created["live_token"], *created["callback_secrets"].values()],
    )


async def test_the_operator_defaults_to_the_os_user(db_url: str, db: Database) -> None:
    created = await create_merchant(db_url)
    await ok(db_url, "merchant", "disable", str(created["merchant_id"]))

    entries = await entries_of(db, created["merchant_id"])
    assert [e["action"] for e in entries] == ["merchant.create", "merchant.status"]
    assert {e["operator"] for e in entries} == {getpass.getuser()}


# Each changing command, as the operator types it (after the merchant's id or token): the
# one entry it leaves (action, env, subject, details), and the values it must not record.
Expected = tuple[str, str | None, str | None, dict[str, Any]]


async def entry_of_command(
    db_url: str, db: Database, args: Callable[[merchants.NewMerchant], list[str]]
) -> tuple[merchants.NewMerchant, str, str, list[Row]]:
    merchant = await new_merchant(db)
    operator = operator_name()
    before = await last_id(db)
    out = await ok(db_url, *args(merchant), "--operator", operator)
    return merchant, operator, out, await entries_of(db, merchant.merchant_id, before)


COMMANDS: dict[str, tuple[Callable[[merchants.NewMerchant], list[str]], Expected]] = {
    "disable": (
        lambda m: ["merchant", "disable", str(m.merchant_id)],
        ("merchant.status", None, None, {"status": "disabled"}),
    ),
    "enable": (
        lambda m: ["merchant", "enable", str(m.merchant_id)],
        ("merchant.status", None, None, {"status": "active"}),
    ),
    "set-callback": (
        lambda m: [
            "merchant",
            "set-callback",
            str(m.merchant_id),
            "https://t.example/cb",
            "--env",
            "test",
        ],
        ("merchant.callback_url", "test", None, {"url": "https://t.example/cb"}),
    ),
    "set-callback none": (
        lambda m: ["merchant", "set-callback", str(m.merchant_id), "none", "--env", "live"],
        ("merchant.callback_url", "live", None, {"url": None}),
    ),
    "set-rate-limit": (
        lambda m: [
            "merchant",
            "set-rate-limit",
            str(m.merchant_id),
            "--per-s",
            "3",
            "--burst",
            "5",
        ],
        ("merchant.rate_limit", None, None, {"per_s": 3, "burst": 5}),
    ),
    "set-rate-limit --default": (
        lambda m: ["merchant", "set-rate-limit", str(m.merchant_id), "--default"],
        ("merchant.rate_limit", None, None, {"per_s": None, "burst": None}),
    ),
    "token revoke": (
        lambda m: ["token", "revoke", m.test_token],
        ("token.revoke", "test", "hint of the test token", {}),
    ),
}


@pytest.mark.parametrize("command", list(COMMANDS))
async def test_each_changing_command_leaves_one_entry_naming_the_operator(
    db_url: str, db: Database, command: str
) -> None:
    args, (action, env, subject, details) = COMMANDS[command]
    merchant, operator, _, entries = await entry_of_command(db_url, db, args)

    assert len(entries) == 1, entries
    entry = entries[0]
    assert entry["action"] == action
    assert entry["operator"] == operator
    assert entry["merchant_id"] == merchant.merchant_id
    assert entry["env"] == env
    if subject == "hint of the test token":
        subject = tokens.hint(merchant.test_token)
    assert entry["subject"] == subject
    assert json.loads(entry["details_json"]) == details
    assert_no_secret_in(entries, [merchant.test_token, merchant.live_token])


async def test_rotate_secret_records_when_the_old_secret_stops_never_a_secret(
    db_url: str, db: Database
) -> None:
    merchant, operator, out, entries = await entry_of_command(
        db_url,
        db,
        lambda m: ["merchant", "rotate-secret", str(m.merchant_id), "--env", "live", "--json"],
    )
    new_secret = json.loads(out.strip().splitlines()[-1])["secret"]

    assert len(entries) == 1, entries
    entry = entries[0]
    assert (entry["action"], entry["operator"], entry["env"], entry["subject"]) == (
        "merchant.callback_secret",
        operator,
        "live",
        None,
    )
    details = json.loads(entry["details_json"])
    assert set(details) == {"previous_signs_until_ms"}
    assert abs(details["previous_signs_until_ms"] - (int(entry["at_ms"]) + DAY_MS)) < 1000
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT previous_secret FROM webhook_endpoints WHERE merchant_id = $1 AND env = $2",
            merchant.merchant_id,
            "live",
        )
    assert row is not None
    assert_no_secret_in(entries, [new_secret, str(row["previous_secret"])])


async def test_token_create_records_the_tokens_hint_only(db_url: str, db: Database) -> None:
    merchant, operator, out, entries = await entry_of_command(
        db_url, db, lambda m: ["token", "create", str(m.merchant_id), "--env", "live"]
    )
    token = out.strip().splitlines()[-1]
    assert len(token) >= 20, out

    assert len(entries) == 1, entries
    entry = entries[0]
    assert (entry["action"], entry["operator"], entry["env"], entry["subject"]) == (
        "token.create",
        operator,
        "live",
        tokens.hint(token),
    )
    assert json.loads(entry["details_json"]) == {}
    assert_no_secret_in(entries, [token, merchant.test_token, merchant.live_token])


async def test_a_refused_action_writes_no_entry(db_url: str, db: Database) -> None:
    merchant = await new_merchant(db)
    before = await entry_count(db)
    refused = [
        ("merchant", "disable", MISSING_MERCHANT_ID),
        ("merchant", "enable", MISSING_MERCHANT_ID),
        ("merchant", "set-callback", MISSING_MERCHANT_ID, "https://x.example/", "--env", "live"),
        ("merchant", "set-callback", str(merchant.merchant_id), "ftp://x/", "--env", "test"),
        ("merchant", "set-rate-limit", MISSING_MERCHANT_ID, "--per-s", "3", "--burst", "5"),
        ("merchant", "rotate-secret", MISSING_MERCHANT_ID, "--env", "test"),
        ("token", "create", MISSING_MERCHANT_ID, "--env", "test"),
        ("token", "revoke", "TEST:" + "x" * 20),
    ]
    for args in refused:
        done = await bhuktani(db_url, *args, "--operator", "refused")
        assert refused_cleanly(done), (args, done.stdout, done.stderr)

    assert await entry_count(db) == before
    async with db.transaction() as tx:
        orphans = await tx.fetchrow(
            "SELECT COUNT(*) AS n FROM tokens WHERE merchant_id = $1", int(MISSING_MERCHANT_ID)
        )
    assert orphans is not None and int(orphans["n"]) == 0, "no token for a missing merchant"


async def endpoint_rows(db: Database, merchant_id: int) -> list[dict[str, Any]]:
    async with db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT env, url, secret, previous_secret FROM webhook_endpoints"
            " WHERE merchant_id = $1 ORDER BY env",
            merchant_id,
        )
    return [dict(row) for row in rows]


async def failing_record(*_: Any, **__: Any) -> int:
    raise RuntimeError("the audit log refused the entry")


@pytest.mark.parametrize(
    "action",
    [
        "create",
        "set_status",
        "revoke_token",
        "issue_token",
        "set_rate_limit",
        "set_callback_url",
        "rotate_callback_secret",
    ],
)
async def test_an_action_whose_entry_fails_is_undone_with_it(
    db: Database, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    merchant = await new_merchant(db)
    name = f"undone-{uuid.uuid4().hex[:8]}"
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "create": lambda: merchants.create(db, name, key=KEY, operator="t", live_credits_paisa=1),
        "set_status": lambda: merchants.set_status(
            db, merchant.merchant_id, "disabled", operator="t"
        ),
        "revoke_token": lambda: merchants.revoke_token(
            db, merchant.test_token, key=KEY, operator="t"
        ),
        "issue_token": lambda: merchants.issue_token(
            db, merchant.merchant_id, Env.LIVE, key=KEY, operator="t"
        ),
        "set_rate_limit": lambda: merchants.set_rate_limit(
            db, merchant.merchant_id, 3, 5, operator="t"
        ),
        "set_callback_url": lambda: merchants.set_callback_url(
            db, merchant.merchant_id, Env.TEST, "https://t.example/cb", operator="t"
        ),
        "rotate_callback_secret": lambda: merchants.rotate_callback_secret(
            db, merchant.merchant_id, Env.TEST, operator="t"
        ),
    }
    endpoints_before = await endpoint_rows(db, merchant.merchant_id)
    monkeypatch.setattr(audit, "record", failing_record)

    with pytest.raises(RuntimeError, match="audit log refused"):
        await calls[action]()

    async with db.transaction() as tx:
        named = await tx.fetchrow("SELECT COUNT(*) AS n FROM merchants WHERE name = $1", name)
        row = await tx.fetchrow(
            "SELECT status, rate_per_s FROM merchants WHERE id = $1", merchant.merchant_id
        )
        merchant_tokens = await tx.fetch(
            "SELECT status FROM tokens WHERE merchant_id = $1", merchant.merchant_id
        )
    assert named is not None and int(named["n"]) == 0
    assert row is not None
    assert (row["status"], row["rate_per_s"]) == ("active", None)
    assert sorted(str(t["status"]) for t in merchant_tokens) == ["active", "active"]
    assert await endpoint_rows(db, merchant.merchant_id) == endpoints_before


async def audit_json(db_url: str, *args: str) -> tuple[list[dict[str, Any]], str]:
    done = await bhuktani(db_url, "audit", "--json", *args)
    assert done.returncode == 0, done.stderr
    listed: list[dict[str, Any]] = json.loads(done.stdout)
    return listed, done.stderr


async def five_status_changes(db: Database) -> tuple[merchants.NewMerchant, list[Row]]:
    merchant = await new_merchant(db)
    for status in ("disabled", "active", "disabled", "active", "disabled"):
        assert await merchants.set_status(db, merchant.merchant_id, status, operator="pager")
    return merchant, await entries_of(db, merchant.merchant_id)


async def test_audit_json_lists_newest_first_with_nepal_times_and_pages_with_before(
    db_url: str, db: Database
) -> None:
    merchant, stored = await five_status_changes(db)
    assert len(stored) == 6, "the creation and five changes"

    pages: list[list[dict[str, Any]]] = []
    args = ["--merchant", str(merchant.merchant_id), "--limit", "2"]
    while True:
        page, stderr = await audit_json(db_url, *args)
        pages.append(page)
        following = re.search(r"more entries: (.+)", stderr)
        if following is None:
            break
        words = shlex.split(following.group(1))
        assert words[:3] == ["bhuktani", "audit", "--json"], words
        assert words[-2:] == ["--before", str(page[-1]["id"])], words
        args = words[3:]
        assert len(pages) < 10, "paging ends"

    assert [len(page) for page in pages] == [2, 2, 2], "a full last page says no more"
    listed = [entry for page in pages for entry in page]
    assert [e["id"] for e in listed] == [int(e["id"]) for e in reversed(stored)]
    for entry, row in zip(listed, reversed(stored), strict=True):
        at = datetime.fromisoformat(entry["at"])
        assert at.utcoffset() == NEPAL_OFFSET
        assert int(at.timestamp() * 1000) == int(row["at_ms"])
        assert entry["operator"] == row["operator"]
        assert entry["action"] == row["action"]
        assert entry["merchant_id"] == merchant.merchant_id
        assert entry["details"] == json.loads(row["details_json"])


async def test_audit_table_labels_nepal_time_and_says_how_to_get_the_next_page(
    db_url: str, db: Database
) -> None:
    merchant, stored = await five_status_changes(db)
    newest = stored[-1]
    at = datetime.fromtimestamp(int(newest["at_ms"]) / 1000, tz=NEPAL)

    out = await ok(db_url, "audit", "--merchant", str(merchant.merchant_id), "--limit", "3")
    assert at.strftime("%Y-%m-%d %H:%M:%S NPT") in out, out
    assert "merchant.status" in out and "status=disabled" in out, out
    third = stored[-3]
    assert re.search(
        rf"more entries: bhuktani audit --merchant {merchant.merchant_id} --limit 3"
        rf" --before {third['id']}\b",
        out,
    ), out
    assert str(stored[-4]["id"]) not in re.findall(r"^\s*(\d+)\s", out, flags=re.MULTILINE)

    whole = await ok(db_url, "audit", "--merchant", str(merchant.merchant_id), "--limit", "6")
    assert "more entries" not in whole, whole


async def test_audit_action_filter_takes_a_name_or_its_dotted_prefix(
    db_url: str, db: Database
) -> None:
    merchant = await new_merchant(db)
    assert await merchants.set_status(db, merchant.merchant_id, "disabled", operator="f")
    assert await merchants.issue_token(db, merchant.merchant_id, Env.TEST, key=KEY, operator="f")
    assert await merchants.revoke_token(db, merchant.test_token, key=KEY, operator="f")
    only = ["--merchant", str(merchant.merchant_id)]

    def actions(listed: list[dict[str, Any]]) -> list[str]:
        return [entry["action"] for entry in listed]

    assert actions((await audit_json(db_url, *only, "--action", "token"))[0]) == [
        "token.revoke",
        "token.create",
    ]
    assert actions((await audit_json(db_url, *only, "--action", "merchant"))[0]) == [
        "merchant.status",
        "merchant.create",
    ]
    assert actions((await audit_json(db_url, *only, "--action", "merchant.status"))[0]) == [
        "merchant.status"
    ]
    assert (await audit_json(db_url, *only, "--action", "merch"))[0] == []


async def test_demo_records_its_merchant_and_tokens_as_the_demo_operator(
    db_url: str, db: Database
) -> None:
    before = await last_id(db)
    await ok(db_url, "demo")
    async with db.transaction() as tx:
        made = await tx.fetch(
            "SELECT operator, action FROM audit_log WHERE id > $1"
            " AND merchant_id IN (SELECT id FROM merchants WHERE name = 'demo')",
            before,
        )
    assert made, "the demo's merchant or token is audited"
    assert {str(e["operator"]) for e in made} == {"demo"}
    # The merchant (first run), its token, and its dashboard user (made, or a new
    # one-time password).
    assert {str(e["action"]) for e in made} <= {
        "merchant.create",
        "token.create",
        "merchant.add_user",
        "merchant.reset_password",
    }
