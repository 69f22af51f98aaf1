"""What every single-step service's test checks: the document's example, sent as written,
is answered as documented (Queued, the credits held), and the gateway's reconciler
settles it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bhuktani.merchants.service import NewMerchant
from bhuktani.services.single_step import SingleStepService
from tests.conftest import AppClient
from tests.seeds import shape_differences
from tests.services.support import balance, fresh_reference
from tests.support import assert_books_balance, eventually

STATUS = "/api/service/status/"
# Per call: typed, not compared (decision G9).
PER_CALL = {"id", "credits_available"}


def FIXTURES_OF(module: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        (Path(__file__).parent / "fixtures" / f"{module}.json").read_text()
    )
    return found


def use_path(service: SingleStepService) -> str:
    return f"/api/use/{service.slug}/"


async def state_of(client: AppClient, token: str, reference: str) -> str:
    answer = await client.request("GET", STATUS, json={"token": token, "reference": reference})
    assert answer.status_code == 200, answer.text
    state: str = answer.json()["state"]
    return state


async def final_state(client: AppClient, token: str, reference: str) -> str:
    """The state once the gateway's reconciler has settled the payment."""

    async def settled() -> str | None:
        state = await state_of(client, token, reference)
        return None if state == "Queued" else state

    found: str = await eventually(settled, timeout_s=15, every_s=0.05)
    return found


async def check_queued_then_settled(
    client: AppClient,
    merchant: NewMerchant,
    service: SingleStepService,
    fixtures: dict[str, Any],
) -> None:
    token = merchant.test_token
    before = await balance(client, token)
    reference = fresh_reference()
    request = {"token": token, "reference": reference, **fixtures["use"]["request"]}
    response = await client.post(use_path(service), json=request)
    assert response.status_code == 200, response.text
    answer, documented = response.json(), fixtures["use"]["answer"]
    assert shape_differences(documented, answer) == [], answer
    assert {k: v for k, v in answer.items() if k not in PER_CALL} == {
        k: v for k, v in documented.items() if k not in PER_CALL
    }
    amount = float(fixtures["use"]["request"]["amount"])
    assert answer["credits_available"] == before - amount
    assert await balance(client, token) == before - amount
    # The gateway's reconciler hands it to the (sandbox) ISP, which applies it.
    assert await final_state(client, token, reference) == "Success"
    assert await balance(client, token) == before - amount
    await assert_books_balance(client.gateway.db)
