"""The demo merchant of `make run`, and the copy-paste curls it prints."""

from __future__ import annotations

import json
from typing import Any

from bhuktani.domain import Env
from bhuktani.merchants import service as merchants
from bhuktani.sandbox import inprocess
from bhuktani.services import registry
from bhuktani.services.base import ServiceGroup
from bhuktani.store import Database, query_row
from bhuktani.web import users

DEMO_NAME = "demo"
DEMO_TEST_CREDITS_PAISA = 1_000_000 * 100
# Who the audit log says made the demo merchant and its tokens.
DEMO_OPERATOR = "demo"


# The demo's dashboard and console users: a new one-time password on every run.
DEMO_MERCHANT_USER = "demo@bhuktani.example"
DEMO_OPERATOR_USER = "operator@bhuktani.example"


async def ensure_demo_users(db: Database) -> list[tuple[str, str, str]]:
    """(area, email, one-time password) of the demo merchant's dashboard user and of an
    operator: made on first use, given a new one-time password on every later one."""
    row = await query_row(
        db, "SELECT id FROM merchants WHERE name = $1 ORDER BY id LIMIT 1", DEMO_NAME
    )
    assert row is not None, "ensure_demo made the demo merchant"
    shown = []
    for area, email, merchant_id in (
        ("dashboard", DEMO_MERCHANT_USER, int(row["id"])),
        ("console", DEMO_OPERATOR_USER, None),
    ):
        try:
            _, password = await users.reset(db, email, operator=DEMO_OPERATOR)
        except users.UserError:
            role: users.Role = "merchant" if merchant_id is not None else "operator"
            _, password = await users.add(
                db, email, role, merchant_id=merchant_id, operator=DEMO_OPERATOR
            )
        shown.append((area, email, password))
    return shown


def render_users(base_url: str, shown: list[tuple[str, str, str]]) -> str:
    lines = [
        "",
        "# The dashboard and the console (a one-time password: choose your own at sign-in)",
    ]
    lines += [f"#   {base_url}/{area}/  {email}  {password}" for area, email, password in shown]
    lines += [
        "# The API's documents: " + base_url + "/docs (Swagger UI), " + base_url + "/redoc",
        "",
        "# The server's log follows in this terminal: paste the curls into a second one.",
    ]
    return "\n".join(lines)


async def ensure_demo(db: Database, *, key: bytes) -> str:
    """A TEST token of the demo merchant, made on first use. Tokens are stored as hashes,
    so each call issues a new one; earlier ones stay valid. The demo merchant's sandbox
    subscribers are reset each time, so that the printed examples pay again what a
    previous run paid once (a bill, a due, a plan sold once)."""
    row = await query_row(
        db, "SELECT id FROM merchants WHERE name = $1 ORDER BY id LIMIT 1", DEMO_NAME
    )
    if row is None:
        created = await merchants.create(
            db,
            DEMO_NAME,
            key=key,
            operator=DEMO_OPERATOR,
            test_credits_paisa=DEMO_TEST_CREDITS_PAISA,
        )
        return created.test_token
    merchant_id = int(row["id"])
    await inprocess.reset(db, merchant_id)
    token = await merchants.issue_token(db, merchant_id, Env.TEST, key=key, operator=DEMO_OPERATOR)
    assert token is not None, "merchants are never removed, so the demo merchant is still there"
    return token


# Stand-ins in the bodies, replaced by shell words after the JSON is written.
_REFERENCE = "@REFERENCE@"
_SESSION = 987654321987654321


def _post(base_url: str, path: str, body: dict[str, Any]) -> str:
    text = json.dumps(body)
    # The reference is fresh each time (the shell's REF), the session the details call's.
    text = text.replace(f'"{_REFERENCE}"', '"\'"$REF"\'"').replace(str(_SESSION), "'\"$SESSION\"'")
    return f"curl -s -w '\\n' -X POST {base_url}{path} -H 'Content-Type: application/json' \\\n  -d '{text}'"


def _group_curls(base_url: str, token: str, group: ServiceGroup, step: int) -> list[str]:
    """A details call and a payment of the group's examples; a session group's payment
    takes its session from a details call of its own."""
    new_ref = "REF=demo-$(date +%s%N)"
    details = _post(
        base_url,
        f"/api/servicegroup/details/{group.slug}/",
        {"token": token, "reference": _REFERENCE, **group.examples.details},
    )
    commit_body = {"token": token, "reference": _REFERENCE, **group.examples.commit}
    lines = [f"# {step}. {group.title} details", new_ref, details, ""]
    if group.uses_sessions:
        commit_body["session_id"] = _SESSION
        lines += [
            f"# {step + 1}. {group.title} payment (a new session from a details call, then"
            " the payment)",
            new_ref,
            f"SESSION=$({details} | {_PICK_SESSION})",
        ]
    else:
        lines += [f"# {step + 1}. {group.title} payment", new_ref]
    lines += [_post(base_url, f"/api/servicegroup/commit/{group.slug}/", commit_body), ""]
    return lines


_PICK_SESSION = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"session_id\"])'"


def render_curls(base_url: str, token: str) -> str:
    """Shell lines to paste as they are, a details call and a payment for each service
    group from its own examples, a payment for each single-step service: each call's reference is made unique with the clock, and
    a session goes from its details call to the payment."""
    lines = ["Demo merchant ready. Its TEST token (shown once):", f"  {token}", ""]
    for index, group in enumerate(registry.GROUPS):
        lines += _group_curls(base_url, token, group, 2 * index + 1)
    step = 2 * len(registry.GROUPS) + 1
    for index, service in enumerate(registry.SINGLE_STEP):
        lines += [
            f"# {step + index}. {service.title} payment (single step: Queued, then settled)",
            "REF=demo-$(date +%s%N)",
            _post(
                base_url,
                f"/api/use/{service.slug}/",
                {"token": token, "reference": _REFERENCE, **service.example},
            ),
            "",
        ]
    lines += [
        "# Look-ups: the last payment by its reference, and the balance",
        f'curl -s -w "\\n" "{base_url}/api/service/status/?reference=$REF"'
        f" -H 'Authorization: Token {token}'",
        f"curl -s -w '\\n' '{base_url}/api/balance' -H 'Authorization: Token {token}'",
    ]
    return "\n".join(lines)
