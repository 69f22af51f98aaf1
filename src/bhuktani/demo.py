"""The demo merchant of `make run`, and the copy-paste curls it prints."""

from __future__ import annotations

import json

from bhuktani.merchants import service as merchants
from bhuktani.store import Database

DEMO_NAME = "demo"
DEMO_TEST_CREDITS_PAISA = 1_000_000 * 100


async def ensure_demo(db: Database, *, key: bytes) -> str:
    """A TEST token of the demo merchant, made on first use. Tokens are stored as hashes,
    so each call issues a new one; earlier ones stay valid."""
    async with db.transaction() as tx:
        row = await tx.fetchrow(
            "SELECT id FROM merchants WHERE name = $1 ORDER BY id LIMIT 1", DEMO_NAME
        )
    if row is None:
        created = await merchants.create(
            db, DEMO_NAME, key=key, test_credits_paisa=DEMO_TEST_CREDITS_PAISA
        )
        return created.test_token
    return await merchants.issue_token(db, int(row["id"]), "test", key=key)


def _curl(base_url: str, path: str, body: dict[str, object]) -> str:
    return (
        f"curl -s -X POST {base_url}{path} -H 'Content-Type: application/json' \\\n"
        f"  -d '{json.dumps(body)}'"
    )


def render_curls(base_url: str, token: str) -> str:
    lines = [
        "Demo merchant ready. Its TEST token (shown once):",
        f"  {token}",
        "",
        "1. HashCNet V2 details (note the session_id it returns):",
        _curl(
            base_url,
            "/api/servicegroup/details/hashcnet-v2/",
            {
                "token": token,
                "reference": "demo-details-1",
                "username": "jeetenaug4",
                "service_slug": "vns",
            },
        ),
        "",
        "2. HashCNet V2 payment (put the session_id from step 1; use a new reference each time):",
        _curl(
            base_url,
            "/api/servicegroup/commit/hashcnet-v2/",
            {
                "token": token,
                "reference": "demo-pay-1",
                "session_id": 0,
                "package_code": 9,
                "duration_code": "1",
                "amount": 999.0,
            },
        ),
        "",
        "3. Arrownet details:",
        _curl(
            base_url,
            "/api/servicegroup/details/arrownet/",
            {"token": token, "username": "Pradhanang"},
        ),
        "",
        "4. Arrownet payment:",
        _curl(
            base_url,
            "/api/servicegroup/commit/arrownet/",
            {
                "token": token,
                "username": "Pradhanang",
                "amount": "1695.00",
                "duration": 1,
                "reference": "demo-pay-2",
            },
        ),
        "",
        "Look-ups:",
        f"curl -s '{base_url}/api/service/status/?reference=demo-pay-2' -H 'Authorization: Token {token}'",
        f"curl -s '{base_url}/api/balance' -H 'Authorization: Token {token}'",
    ]
    return "\n".join(lines)
