"""The demo merchant of `make run`, and the copy-paste curls it prints."""

from __future__ import annotations

from bhuktani.merchants import service as merchants
from bhuktani.store import Database, query_row

DEMO_NAME = "demo"
DEMO_TEST_CREDITS_PAISA = 1_000_000 * 100


async def ensure_demo(db: Database, *, key: bytes) -> str:
    """A TEST token of the demo merchant, made on first use. Tokens are stored as hashes,
    so each call issues a new one; earlier ones stay valid."""
    row = await query_row(
        db, "SELECT id FROM merchants WHERE name = $1 ORDER BY id LIMIT 1", DEMO_NAME
    )
    if row is None:
        created = await merchants.create(
            db, DEMO_NAME, key=key, test_credits_paisa=DEMO_TEST_CREDITS_PAISA
        )
        return created.test_token
    return await merchants.issue_token(db, int(row["id"]), "test", key=key)


def _post(base_url: str, path: str, body: str) -> str:
    return f"curl -s -w '\\n' -X POST {base_url}{path} -H 'Content-Type: application/json' \\\n  -d '{body}'"


def render_curls(base_url: str, token: str) -> str:
    """Shell lines to paste as they are: each call's reference is made unique with the
    clock, and the HashCNet V2 session id goes from the details call to the payment."""
    fresh = "'\"$REF\"'"
    new_ref = "REF=demo-$(date +%s%N)"
    pick_session = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"session_id\"])'"
    hashcnet_details = _post(
        base_url,
        "/api/servicegroup/details/hashcnet-v2/",
        f'{{"token": "{token}", "reference": "{fresh}", "username": "jeetenaug4",'
        ' "service_slug": "vns"}',
    )
    return "\n".join(
        [
            "Demo merchant ready. Its TEST token (shown once):",
            f"  {token}",
            "",
            "# 1. HashCNet V2 details",
            new_ref,
            hashcnet_details,
            "",
            "# 2. HashCNet V2 payment (a new session from step 1's call, then the payment)",
            new_ref,
            f"SESSION=$({hashcnet_details} | {pick_session})",
            _post(
                base_url,
                "/api/servicegroup/commit/hashcnet-v2/",
                f'{{"token": "{token}", "reference": "{fresh}", "session_id": \'"$SESSION"\','
                ' "package_code": 9, "duration_code": "1", "amount": 999.00}',
            ),
            "",
            "# 3. Arrownet details",
            _post(
                base_url,
                "/api/servicegroup/details/arrownet/",
                f'{{"token": "{token}", "username": "Pradhanang"}}',
            ),
            "",
            "# 4. Arrownet payment",
            new_ref,
            _post(
                base_url,
                "/api/servicegroup/commit/arrownet/",
                f'{{"token": "{token}", "username": "Pradhanang", "amount": "1695.00",'
                f' "duration": 1, "reference": "{fresh}"}}',
            ),
            "",
            "# Look-ups: the last payment by its reference, and the balance",
            f'curl -s -w "\\n" "{base_url}/api/service/status/?reference=$REF"'
            f" -H 'Authorization: Token {token}'",
            f"curl -s -w '\\n' '{base_url}/api/balance' -H 'Authorization: Token {token}'",
        ]
    )
