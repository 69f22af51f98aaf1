"""The look-ups and the callback in the platform's own shapes (khalti-docs/Servicescodes/:
lookup.md, bulkservice.md, statecode.md, dlr.md), compared with the documents' examples
field by field and JSON type by JSON type (tests/api/fixtures/platform_lookups.json holds
them as the documents write them)."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bhuktani.api.app import create_app
from bhuktani.clock import NEPAL
from bhuktani.domain import State
from bhuktani.ledger.book import book_for
from bhuktani.merchants import service as merchants
from bhuktani.merchants.service import NewMerchant
from bhuktani.payments import operator, records
from bhuktani.payments.lookup import original_status
from tests.conftest import AppClient
from tests.receiver import receiving
from tests.seeds import json_type, shape_differences
from tests.support import KEY, assert_books_balance, eventually, fast_settings, new_merchant

FIXTURES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "platform_lookups.json").read_text()
)
DOCUMENTED = FIXTURES["status"]
BULK = FIXTURES["bulk_status"]["answer"]
PLATFORM_STATES = FIXTURES["states"]["states"]
# The documents, where this checkout has them beside it (../shared/khalti-docs).
DOCS = Path(__file__).resolve().parents[3] / "shared" / "khalti-docs" / "Servicescodes"
_BLOCK = re.compile(r'<pre><code class="json">(.*?)</code></pre>', re.DOTALL)

DETAILS = "/api/servicegroup/details/hashcnet-v2/"
COMMIT = "/api/servicegroup/commit/hashcnet-v2/"
STATUS = "/api/service/status/"
BULK_STATUS = "/api/service/bulk/status/"
# Every value payments.isp_status is written with (schema default, records, operator).
ISP_STATUSES = ("Sent", "Unknown", "NotFound", "Paid", "Refused", operator.OPERATOR_STATUS)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def app_client(db_url: str, **overrides: Any) -> AsyncIterator[AppClient]:
    app = create_app(fast_settings(db_url, **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AppClient(transport=transport, base_url="http://gateway") as http:
            http.gateway = app.state.gateway
            yield http


async def pay(client: AppClient, token: str, reference: str, username: str) -> dict[str, Any]:
    """A HashCNet V2 payment of 999.00; the sandbox user picks the ISP's answer."""
    details = {"token": token, "reference": unique("d"), "username": username}
    found = await client.post(DETAILS, json=details | {"service_slug": "vns"})
    assert found.status_code == 200, found.text
    body = {
        "token": token,
        "reference": reference,
        "session_id": found.json()["session_id"],
        "package_code": 9,
        "duration_code": "1",
        "amount": 999,
    }
    response = await client.post(COMMIT, json=body)
    answer: dict[str, Any] = response.json()
    return answer


async def looked_up(client: AppClient, token: str, reference: str) -> dict[str, Any]:
    response = await client.get(STATUS, params={"token": token, "reference": reference})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_documented_types(documented: dict[str, Any], body: dict[str, Any]) -> None:
    """Every documented field is there, with the documented JSON type."""
    assert set(documented) <= set(body), sorted(set(documented) - set(body))
    assert {k: json_type(body[k]) for k in documented} == {
        k: json_type(v) for k, v in documented.items()
    }


# The fixtures are the documents.


@pytest.mark.skipif(not DOCS.is_dir(), reason="khalti-docs is not beside this checkout")
def test_the_fixtures_are_the_documents() -> None:
    lookup = [json.loads(b) for b in _BLOCK.findall((DOCS / "lookup.md").read_text())]
    assert lookup == [
        DOCUMENTED[k] for k in ("request", "success", "failed", "unknown_reference", "failed_short")
    ]
    bulk = _BLOCK.findall((DOCS / "bulkservice.md").read_text())
    assert json.loads(bulk[1]) == BULK
    dlr = _BLOCK.findall((DOCS / "dlr.md").read_text())[0]
    assert dlr.strip().startswith(f"Content-Type: {FIXTURES['callback']['content_type']}")
    assert json.loads(dlr.split("\n", 2)[2]) == FIXTURES["callback"]["fields"]
    states = (DOCS / "statecode.md").read_text()
    found = re.findall(r"^\| \*\*([A-Za-z ]+)\*\* +\|", states, re.M)
    assert found == ["State", *PLATFORM_STATES]


# Status of one payment (lookup.md).


async def test_a_successful_payment_is_the_documented_success_answer(
    client: AppClient, merchant: NewMerchant
) -> None:
    reference = unique("p")
    commit = await pay(client, merchant.test_token, reference, "jeetenaug4")
    body = await looked_up(client, merchant.test_token, reference)
    documented = DOCUMENTED["success"]
    assert shape_differences(documented, body) == []
    assert list(body) == list(documented)
    assert body["state"] == "Success" and body["original_status"] == "Success"
    assert body["response_id"] == commit["id"]
    assert body["amount"] == 999.0
    assert (body["refunded"], body["refunded_amount"], body["refunds"]) == (False, 0.0, [])


async def test_a_refused_payment_is_the_documented_failed_answer(
    client: AppClient, merchant: NewMerchant
) -> None:
    reference = unique("p")
    refused = await pay(client, merchant.test_token, reference, "refuse-user")
    assert refused["error_code"] == "1021"
    body = await looked_up(client, merchant.test_token, reference)
    documented = DOCUMENTED["failed"]
    assert shape_differences(documented, body) == []
    assert list(body) == list(documented)
    # The ISP's refusal in the platform's words, as the documented Failed answer has it.
    assert (body["state"], body["original_status"]) == ("Failed", "Error")
    # Decision (docs/API.md section 5): the released hold is no refund; refunds list only
    # money given back after a Success, so refunded_amount is always their sum.
    assert (body["refunded"], body["refunded_amount"], body["refunds"]) == (False, 0.0, [])
    assert body["details"]
    await assert_books_balance(client.gateway.db)


async def test_a_failed_payment_has_every_field_of_the_short_failed_answer(
    client: AppClient, merchant: NewMerchant
) -> None:
    reference = unique("p")
    await pay(client, merchant.test_token, reference, "refuse-user")
    body = await looked_up(client, merchant.test_token, reference)
    # lookup.md shows a Failed answer twice, the second with fewer fields: one shape, the
    # fuller one, serves a client of either.
    assert_documented_types(DOCUMENTED["failed_short"], body)


@pytest.mark.parametrize("reference", ["never-used", "r" * 51])
async def test_an_unknown_reference_is_the_documented_error(
    client: AppClient, merchant: NewMerchant, reference: str
) -> None:
    response = await client.get(
        STATUS, params={"token": merchant.test_token, "reference": reference}
    )
    assert response.status_code == 400
    body = response.json()
    documented = DOCUMENTED["unknown_reference"]
    assert shape_differences(documented, body) == []
    # Only details says more than the document's "": what went wrong (section 2).
    assert {k: v for k, v in body.items() if k != "details"} == {
        k: v for k, v in documented.items() if k != "details"
    }
    assert isinstance(body["details"], str)


async def test_a_refund_is_the_documented_refund_with_a_date(
    client: AppClient, merchant: NewMerchant
) -> None:
    reference = unique("p")
    await pay(client, merchant.test_token, reference, "jeetenaug4")
    target = operator.Target(reference, merchant.merchant_id, "test")
    await operator.refund(
        client.gateway.db, target, amount_paisa=50_050, note="IPTV not delivered", operator="sita"
    )
    body = await looked_up(client, merchant.test_token, reference)
    documented_refund = DOCUMENTED["failed"]["refunds"][0]
    [refund] = body["refunds"]
    assert shape_differences(documented_refund, refund) == []
    assert list(refund) == list(documented_refund)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", refund["created_at"]), refund
    today_in_nepal = datetime.now(NEPAL).date()
    # A refund made a moment before midnight in Nepal may be looked up a moment after it.
    yesterday = today_in_nepal - timedelta(days=1)
    assert refund["created_at"] in {today_in_nepal.isoformat(), yesterday.isoformat()}
    assert (refund["remarks"], refund["amount"]) == ("IPTV not delivered", 500.5)
    assert (body["refunded"], body["refunded_amount"]) == (True, 500.5)
    await assert_books_balance(client.gateway.db)


async def test_a_refund_is_dated_by_the_day_in_nepal(
    client: AppClient, merchant: NewMerchant
) -> None:
    reference = unique("p")
    await pay(client, merchant.test_token, reference, "jeetenaug4")
    target = operator.Target(reference, merchant.merchant_id, "test")
    await operator.refund(
        client.gateway.db, target, amount_paisa=100, note="first", operator="sita"
    )
    await operator.refund(
        client.gateway.db, target, amount_paisa=200, note="second", operator="sita"
    )
    # 2024-07-15 00:00 in Kathmandu is 2024-07-14 18:15 UTC.
    midnight_ms = int(datetime(2024, 7, 14, 18, 15, tzinfo=UTC).timestamp() * 1000)
    async with client.gateway.db.transaction() as tx:
        rows = await tx.fetch(
            "SELECT t.id FROM transfers t JOIN payments p ON p.id = t.payment_id"
            " WHERE p.reference = $1 AND t.kind = 'single' ORDER BY t.id",
            reference,
        )
        for row, at_ms in zip(rows, (midnight_ms - 1, midnight_ms), strict=True):
            await tx.execute(
                "UPDATE transfers SET created_ms = $2 WHERE id = $1", int(row["id"]), at_ms
            )
    body = await looked_up(client, merchant.test_token, reference)
    assert [r["created_at"] for r in body["refunds"]] == ["2024-07-14", "2024-07-15"]


# Many at once (bulkservice.md).


async def test_bulk_entries_are_the_documented_entries_for_every_state(db_url: str) -> None:
    # Without the reconciler the Processing payment stays where the commit left it.
    async with app_client(db_url, reconciler_enabled=False) as client:
        merchant = await new_merchant(client.gateway.db)
        token = merchant.test_token
        done, missing, waiting, refused = (unique(p) for p in ("ok", "JNK", "wait", "no"))
        assert (await pay(client, token, done, "jeetenaug4"))["state"] == "Success"
        assert (await pay(client, token, waiting, "lost-user"))["state"] == "Processing"
        assert (await pay(client, token, refused, "refuse-user"))["error_code"] == "1021"
        # In the documented order: Success, an unknown reference, Processing; then Failed.
        references = [done, missing, waiting, refused]
        response = await client.get(
            BULK_STATUS,
            params={
                "token": token,
                "references": ",".join(references),
                "reference_length": str(len(references)),
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert shape_differences(BULK, body) == []
        assert (body["status"], body["message"]) == (True, "Success")
        entries = body["detail"]
        assert [e["reference"] for e in entries] == references
        assert [e["state"] for e in entries] == ["Success", "Error", "Processing", "Failed"]
        for entry in entries:
            assert list(entry) == list(BULK["detail"][0])
            assert entry["status"] is True
        # An unknown reference exactly as documented, response_id and amount integers 0.
        assert entries[1] == BULK["detail"][1] | {"reference": missing}
        assert type(entries[1]["response_id"]) is int and type(entries[1]["amount"]) is int
        for entry in (entries[0], entries[2], entries[3]):
            assert type(entry["response_id"]) is int and entry["response_id"] > 0
            assert type(entry["amount"]) is float and entry["amount"] == 999.0
        # Each entry is what the status look-up says of the same payment.
        for entry in (entries[0], entries[2], entries[3]):
            single = await looked_up(client, token, entry["reference"])
            assert {k: single[k] for k in entry} == entry


async def test_bulk_with_only_unknown_references_is_documented_errors(
    client: AppClient, merchant: NewMerchant
) -> None:
    response = await client.get(
        BULK_STATUS,
        params={"token": merchant.test_token, "references": "JNK2, JNK3", "reference_length": 2},
    )
    assert response.status_code == 200, response.text
    assert response.json()["detail"] == [
        BULK["detail"][1],
        BULK["detail"][1] | {"reference": "JNK3"},
    ]


# original_status: the ISP's outcome in the platform's words.

# What the ISP said, final: its word whatever the state (a pair no writer makes shows both).
ISP_WORDS = {"Paid": "Success", "Refused": "Error", "NotFound": "Error"}


@pytest.mark.parametrize("isp_status", ISP_STATUSES)
@pytest.mark.parametrize("state", list(State))
def test_original_status_is_a_platform_word_for_every_internal_value(
    state: State, isp_status: str
) -> None:
    word = original_status(str(state), isp_status)
    if state in (State.QUEUED, State.PROCESSING):
        # Nothing final from the ISP yet ("Sent", "Unknown", "NotFound" while asked again).
        assert word == state
    elif isp_status in ISP_WORDS:
        assert word == ISP_WORDS[isp_status]
    else:
        # No final word from the ISP ("Operator": an operator decided): by the state.
        assert word == ("Success" if state == State.SUCCESS else "Error")
    assert word in PLATFORM_STATES
    assert word != "Status Error"
    assert type(word) is str


def test_the_states_we_serve_are_platform_states_and_never_status_error() -> None:
    # Status Error tells a merchant to refund its client; we never say it (section 5).
    assert set(State) <= set(PLATFORM_STATES) - {"Status Error"}


def test_records_write_only_the_mapped_isp_words() -> None:
    from bhuktani.isps.base import NotFound, Paid, Refused

    finals = [
        records.final_of(Paid("R-1")),
        records.final_of(Refused("no")),
        records.final_of(NotFound()),
    ]
    assert [(f.state, f.isp_status) for f in finals] == [
        (State.SUCCESS, "Paid"),
        (State.FAILED, "Refused"),
        (State.FAILED, "NotFound"),
    ]
    assert all(f.isp_status in ISP_WORDS for f in finals)


async def test_original_status_follows_the_payment_to_its_end(db_url: str) -> None:
    async with app_client(db_url) as client:
        merchant = await new_merchant(client.gateway.db)
        token = merchant.test_token
        flaky, lost = unique("flaky"), unique("lost")
        assert (await pay(client, token, flaky, "flaky-user"))["state"] == "Processing"
        assert (await pay(client, token, lost, "lost-user"))["state"] == "Processing"

        async def final(reference: str) -> dict[str, Any] | None:
            body = await looked_up(client, token, reference)
            return body if body["state"] != "Processing" else None

        paid_late = await eventually(lambda: final(flaky), timeout_s=15)
        never_there = await eventually(lambda: final(lost), timeout_s=15)
        assert (paid_late["state"], paid_late["original_status"]) == ("Success", "Success")
        assert (never_there["state"], never_there["original_status"]) == ("Failed", "Error")


@pytest.mark.parametrize(
    ("success", "state", "word"), [(True, "Success", "Success"), (False, "Failed", "Error")]
)
async def test_original_status_of_a_payment_an_operator_decided(
    db_url: str, success: bool, state: str, word: str
) -> None:
    async with app_client(db_url, reconciler_enabled=False) as client:
        merchant = await new_merchant(client.gateway.db)
        reference = unique("p")
        commit = await pay(client, merchant.test_token, reference, "lost-user")
        waiting = await looked_up(client, merchant.test_token, reference)
        assert (waiting["state"], waiting["original_status"]) == ("Processing", "Processing")
        await records.flag(client.gateway.db, commit["id"], "never answered")
        target = operator.Target(reference, merchant.merchant_id, "test")
        await operator.resolve(
            book_for(client.gateway.db), target, success=success, note="rang", operator="sita"
        )
        decided = await looked_up(client, merchant.test_token, reference)
        assert (decided["state"], decided["original_status"]) == (state, word)
        await assert_books_balance(client.gateway.db)


# The callback (dlr.md).


async def test_the_callback_carries_the_documented_fields_and_agrees_with_the_look_up(
    db_url: str,
) -> None:
    async with receiving() as receiver, app_client(db_url, callback_poll_s=0.02) as client:
        merchant = await merchants.create(
            client.gateway.db,
            "dlr merchant",
            key=KEY,
            callback_url=receiver.url,
            test_credits_paisa=100_000_000,
        )
        reference = unique("dlr")
        commit = await pay(client, merchant.test_token, reference, "flaky-user")
        assert commit["state"] == "Processing"
        await eventually(lambda: _received(receiver), timeout_s=15)
        [request] = receiver.received
        assert request.headers["content-type"].startswith(FIXTURES["callback"]["content_type"])
        fields = request.fields()
        # dlr.md's fields, and env (Decision, section 5); a form's values are all strings.
        assert list(fields) == [*FIXTURES["callback"]["fields"], "env"]
        looked = await looked_up(client, merchant.test_token, reference)
        assert fields == {
            "reference": looked["reference"],
            "amount": f"{looked['amount']:.2f}",
            "status": looked["state"],
            "detail": looked["details"],
            "response_id": str(looked["response_id"]),
            "env": "test",
        }
        assert looked["state"] == "Success"


async def _received(receiver: Any) -> bool:
    return bool(receiver.received)
