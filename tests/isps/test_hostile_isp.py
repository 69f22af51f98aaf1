"""A hostile or broken LIVE ISP, scripted over real HTTP, against the real app on both
databases: what it says is made safe at the edge, an explicit outcome stays explicit, and
a payment that cannot be finished is flagged for an operator within a minute."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from bhuktani.api.app import create_app
from bhuktani.isps import codec
from bhuktani.merchants.service import NewMerchant
from bhuktani.runtime import Gateway
from bhuktani.sandbox import isp_sim
from bhuktani.sandbox.faults import Faults
from bhuktani.services import arrownet, hashcnet_v2
from tests.cli.test_commands import bhuktani as cli
from tests.isps.test_adapter import isp as isp_server
from tests.support import assert_books_balance, eventually, fast_settings, new_merchant

API_KEY = "isp-key-hostile-0123456789"
ARROWNET_DETAILS = "/api/servicegroup/details/arrownet/"
ARROWNET_COMMIT = "/api/servicegroup/commit/arrownet/"
DETAILS = "/api/servicegroup/details/hashcnet-v2/"
COMMIT = "/api/servicegroup/commit/hashcnet-v2/"
STATUS = "/api/service/status/"

Answer = tuple[int, Any]  # HTTP status and a JSON body (bytes are sent as they are)


def paid(receipt: Any) -> Callable[[int], Answer]:
    return lambda payment_id: (
        200,
        {"status": "paid", "receipt": receipt, "payment_id": payment_id},
    )


def paid_r1(payment_id: int) -> Answer:
    return paid("R-1")(payment_id)


def garbage(payment_id: int) -> Answer:
    return 200, b'{"status": "pa'


@dataclass
class ScriptedIsp:
    """One ISP billing system whose every answer the test writes."""

    subscriber: dict[str, Any]
    pay: Callable[[int], Answer] = paid_r1
    status: Callable[[int], Answer] = paid_r1
    payments: list[int] = field(default_factory=list)
    questions: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        parts = request.path.strip("/").split("/")
        if request.method == "GET" and parts[2] == "subscribers":
            answer: Answer = (200, self.subscriber)
        elif request.method == "POST" and parts[2] == "payments":
            payment_id = int((await request.json())["payment_id"])
            self.payments.append(payment_id)
            answer = self.pay(payment_id)
        else:
            payment_id = int(parts[3])
            self.questions.append(payment_id)
            answer = self.status(payment_id)
        status, body = answer
        # json, not orjson: a hostile ISP sends lone surrogates and integers past 64 bits.
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return web.Response(status=status, body=content, content_type="application/json")


@dataclass
class Live:
    http: httpx.AsyncClient
    gateway: Gateway
    merchant: NewMerchant
    isp: ScriptedIsp

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post(path, json={"token": self.merchant.live_token, **body})

    async def row(self, payment_id: int) -> dict[str, Any]:
        async with self.gateway.db.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT state, isp_status, detail, flagged, flag_reason FROM payments WHERE id = $1",
                payment_id,
            )
        assert row is not None
        return dict(row)


@asynccontextmanager
async def live(db_url: str, isp: ScriptedIsp, **overrides: Any) -> AsyncIterator[Live]:
    async with isp_server(isp.handle) as base_url:
        settings = fast_settings(
            db_url,
            isps={
                "arrownet": {"base_url": base_url, "api_key": API_KEY},
                "hashcnet-v2": {"base_url": base_url, "api_key": API_KEY},
            },
            **overrides,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            gateway: Gateway = app.state.gateway
            merchant = await new_merchant(gateway.db, live_rupees=100_000)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
                yield Live(http, gateway, merchant, isp)
            await assert_books_balance(gateway.db)


def arrownet_subscriber(**fields: Any) -> dict[str, Any]:
    return codec.subscriber_to_json(arrownet.SANDBOX_USER) | fields


def hashcnet_subscriber(**fields: Any) -> dict[str, Any]:
    return codec.subscriber_to_json(hashcnet_v2.SANDBOX_USER) | fields


def reference() -> str:
    return f"h-{uuid.uuid4().hex[:16]}"


def arrownet_commit(ref: str) -> dict[str, Any]:
    return {"username": "Pradhanang", "amount": "1695.00", "duration": 1, "reference": ref}


# An explicit paid stays explicit, its receipt made safe: once a 500 and a stuck payment
# on PostgreSQL (CharacterNotInRepertoireError), and a NUL stored on SQLite.


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("R\x00X", "R\\x00X"),
        ("R\x1b[31mX\n", "R\\x1b[31mX\\n"),
        ("R\ud800X", "R\\ud800X"),
        ("9" * 5000, "9" * 99 + "…"),
    ],
    ids=["nul", "controls", "surrogate", "long"],
)
async def test_arrownet_paid_with_an_unsafe_receipt_is_a_success_with_a_safe_one(
    db_url: str, raw: str, safe: str, caplog: pytest.LogCaptureFixture
) -> None:
    isp = ScriptedIsp(arrownet_subscriber(), pay=paid(raw), status=paid(raw))
    async with live(db_url, isp) as gw:
        ref = reference()
        response = await gw.post(ARROWNET_COMMIT, arrownet_commit(ref))
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "Success"
        row = await gw.row(response.json()["id"])
        assert (row["state"], row["isp_status"], row["detail"]) == ("Success", "Paid", safe)
        status = await gw.http.get(
            STATUS, params={"token": gw.merchant.live_token, "reference": ref}
        )
        assert status.status_code == 200, status.text
        assert status.json()["details"] == f"Transaction successful; ISP receipt {safe}"


async def test_hashcnet_paid_with_a_nul_in_its_receipt_answers_the_safe_receipt(
    db_url: str,
) -> None:
    isp = ScriptedIsp(hashcnet_subscriber(), pay=paid("R\x00X"), status=paid("R\x00X"))
    async with live(db_url, isp) as gw:
        details = await gw.post(
            DETAILS, {"username": "jeetenaug4", "service_slug": "vns", "reference": reference()}
        )
        assert details.status_code == 200, details.text
        body = {
            "reference": reference(),
            "session_id": details.json()["session_id"],
            "package_code": 9,
            "duration_code": "1",
            "amount": 999,
        }
        response = await gw.post(COMMIT, body)
        assert response.status_code == 200, response.text
        assert (response.json()["state"], response.json()["detail"]) == ("Success", "R\\x00X")
        assert (await gw.row(response.json()["id"]))["detail"] == "R\\x00X"


async def test_a_refusal_with_unsafe_text_fails_the_payment_with_safe_text(db_url: str) -> None:
    refusal = {"status": "refused", "reason": "No\x00 such\u2028plan", "field": "amount\x00"}
    isp = ScriptedIsp(arrownet_subscriber(), pay=lambda _: (422, refusal))
    async with live(db_url, isp) as gw:
        response = await gw.post(ARROWNET_COMMIT, arrownet_commit(reference()))
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "1021"  # the field named no field
        assert response.json()["details"] == "No\ufffd such\ufffdplan"


# Prices, days and text of a look-up.

BAD_DURATIONS = [
    {"code": "3", "title": "negative", "amount_paisa": -100, "days": 90},
    {"code": "6", "title": "free", "amount_paisa": 0, "days": 180},
    {"code": "12", "title": "absurd", "amount_paisa": 1180591620717411303424, "days": 360},
    {"code": "24", "title": "above the cap", "amount_paisa": 10_000_000_01, "days": 720},
    {"code": "36", "title": "too long", "amount_paisa": 100, "days": 2**40},
    {"code": "48", "title": "backwards", "amount_paisa": 100, "days": -1},
    {"code": "60", "title": "ten years and a day", "amount_paisa": 100, "days": 3661},
    {"code": "7\x00", "title": "bad code", "amount_paisa": 100, "days": 30},
]
GOOD_DURATION = {"code": "1", "title": "1 Month\x00", "amount_paisa": 169_500, "days": 30}


async def test_plans_with_nonsensical_prices_or_days_are_never_offered(db_url: str) -> None:
    packages = [
        {"title": "50Mbps", "code": 1, "durations": [GOOD_DURATION, *BAD_DURATIONS]},
        {"title": "Gold\x00", "code": 2, "durations": [GOOD_DURATION]},
        {"title": "x" * 101, "code": 3, "durations": [GOOD_DURATION]},
        {"title": "Huge", "code": 2**70, "durations": [GOOD_DURATION]},
    ]
    subscriber = hashcnet_subscriber(
        current_plan="50Mbps",
        days_remaining=-5,
        full_name="Ram\x00 Bahadur\u202e",
        customer_id="c\x07" * 100,
        packages=packages,
    )
    async with live(db_url, ScriptedIsp(subscriber)) as gw:
        response = await gw.post(
            DETAILS, {"username": "jeetenaug4", "service_slug": "vns", "reference": reference()}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["days_remaining"] == 0
        assert [p["title"] for p in body["available_packages"]] == ["50Mbps"]
        durations = body["available_packages"][0]["duration"]
        assert durations == [
            {"total_cost": 1695, "duration_code": "1", "duration_title": "1 Month\ufffd"}
        ]
        assert [d["duration_code"] for d in body["plan_detail"]] == ["1"]
        customer = body["customer_name"]
        assert customer.startswith("jeetenaug4(c\ufffd") and len(customer) <= 12 + 64
        # Every hostile price is refused at commit too: it is in no session.
        commit = {
            "reference": reference(),
            "session_id": body["session_id"],
            "package_code": 1,
            "duration_code": "36",
            "amount": "1.00",
        }
        refused = await gw.post(COMMIT, commit)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error_code"] == "1010"
        assert gw.isp.payments == []


@pytest.mark.parametrize("days_remaining", [-5, -(2**40), 2**40])
async def test_arrownet_days_remaining_out_of_range_is_clamped(
    db_url: str, days_remaining: int
) -> None:
    subscriber = arrownet_subscriber(days_remaining=days_remaining)
    async with live(db_url, ScriptedIsp(subscriber)) as gw:
        response = await gw.post(ARROWNET_DETAILS, {"username": "Pradhanang"})
        assert response.status_code == 200, response.text
        assert response.json()["days_remaining"] == (0 if days_remaining < 0 else 36_600)


async def test_arrownet_commit_is_never_priced_by_a_plan_of_absurd_days(db_url: str) -> None:
    durations = [{"code": "1", "title": "1 Month", "amount_paisa": 169_500, "days": 2**40}]
    packages = [{"title": "50Mbps", "code": 1, "durations": durations}]
    async with live(db_url, ScriptedIsp(arrownet_subscriber(packages=packages))) as gw:
        response = await gw.post(ARROWNET_COMMIT, arrownet_commit(reference()))
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "1010"
        assert gw.isp.payments == []


@pytest.mark.parametrize(
    "fields",
    [
        {"username": "Pradhanang\x00"},
        {"username": "p" * 101},
        {"username": ""},
        {"days_remaining": "5"},
        {"packages": [{"title": "50Mbps", "code": 1, "durations": [{"code": "1"}]}]},
    ],
    ids=["nul", "long", "empty", "days-as-text", "half-a-duration"],
)
async def test_a_subscriber_that_cannot_be_read_is_1018(
    db_url: str, fields: dict[str, Any]
) -> None:
    async with live(db_url, ScriptedIsp(arrownet_subscriber(**fields))) as gw:
        response = await gw.post(ARROWNET_DETAILS, {"username": "Pradhanang"})
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "1018"
        commit = await gw.post(ARROWNET_COMMIT, arrownet_commit(reference()))
        assert commit.json()["error_code"] == "1018"
        assert gw.isp.payments == []


# A payment that cannot be finished is flagged within a minute, shown, and resolved.


async def test_unreadable_answers_flag_the_payment_for_an_operator_who_resolves_it(
    db_url: str,
) -> None:
    """The ISP applied the payment but answers nothing readable, ever: the merchant is told
    Processing, the reconciler flags it after three unreadable answers (a setting), an
    operator sees why and captures it, and the books balance."""
    isp = ScriptedIsp(arrownet_subscriber(), pay=garbage, status=garbage)
    async with live(db_url, isp, reconcile_flag_after_failures=3) as gw:
        ref = reference()
        response = await gw.post(ARROWNET_COMMIT, arrownet_commit(ref))
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "Processing"
        payment_id = response.json()["id"]

        async def flagged() -> bool:
            return bool((await gw.row(payment_id))["flagged"])

        await eventually(flagged, timeout_s=30)
        asked = len(isp.questions)
        assert asked == 3, isp.questions
        row = await gw.row(payment_id)
        assert row["state"] == "Processing"
        assert "unreadable" in str(row["flag_reason"]), row
        await asyncio.sleep(0.5)
        assert len(isp.questions) == asked, "a flagged payment is asked no more"

        shown = await cli(db_url, "payment", "show", ref, "--json")
        assert shown.returncode == 0, shown.stderr
        [view] = json.loads(shown.stdout)
        assert view["flagged"] is True
        assert view["state"] == "Processing"
        assert "unreadable" in view["flag_reason"]

        done = await cli(
            db_url, "payment", "resolve", ref, "--success", "--note", "ISP confirmed by phone",
            "--operator", "ops",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (await gw.row(payment_id))["state"] == "Success"


async def test_the_reconciler_settles_a_paid_status_with_a_nul_receipt(db_url: str) -> None:
    """Once the reconciler's round failed on it every minute, for a day, on PostgreSQL."""
    isp = ScriptedIsp(arrownet_subscriber(), pay=garbage, status=paid("R\x00X"))
    async with live(db_url, isp) as gw:
        response = await gw.post(ARROWNET_COMMIT, arrownet_commit(reference()))
        assert response.json()["state"] == "Processing", response.text
        payment_id = response.json()["id"]

        async def settled() -> bool:
            return (await gw.row(payment_id))["state"] != "Processing"

        await eventually(settled, timeout_s=10)
        row = await gw.row(payment_id)
        assert (row["state"], row["detail"], row["flagged"]) == ("Success", "R\\x00X", False)
        assert isp.questions == [payment_id]


async def test_arrownet_details_never_show_a_nonsensical_price(db_url: str) -> None:
    durations = [
        {"code": "1", "title": "1 Month", "amount_paisa": 169_500, "days": 30},
        {"code": "3", "title": "3 Months", "amount_paisa": -100, "days": 90},
        {"code": "6", "title": "6 Months", "amount_paisa": 0, "days": 180},
        {"code": "12", "title": "12 Months", "amount_paisa": 1180591620717411303424, "days": 360},
    ]
    packages = [{"title": "50Mbps", "code": 1, "durations": durations}]
    async with live(db_url, ScriptedIsp(arrownet_subscriber(packages=packages))) as gw:
        response = await gw.post(ARROWNET_DETAILS, {"username": "Pradhanang"})
        assert response.status_code == 200, response.text
        assert response.json()["plan_details"] == [{"duration": 1, "amount": "1695.00"}]
        refused = await gw.post(
            ARROWNET_COMMIT,
            {"username": "Pradhanang", "amount": "0.01", "duration": 6, "reference": reference()},
        )
        assert refused.json()["error_code"] == "1010", refused.text
        assert gw.isp.payments == []


# The sandbox's LIVE ISP, isp-sim, sends the same hostile receipt when asked to.


async def test_isp_sim_hostile_receipts_are_successes_with_safe_receipts(db_url: str) -> None:
    server, simulator = await isp_sim.start(
        "127.0.0.1", 0, api_key=API_KEY, faults=Faults(hostile_p=1.0)
    )
    base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    settings = fast_settings(
        db_url, isps={"hashcnet-v2": {"base_url": base_url, "api_key": API_KEY}}
    )
    try:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            gateway: Gateway = app.state.gateway
            merchant = await new_merchant(gateway.db, live_rupees=10_000)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
                token = merchant.live_token
                details = await http.post(
                    DETAILS,
                    json={"token": token, "username": "jeetenaug4", "service_slug": "vns",
                          "reference": reference()},
                )  # fmt: skip
                assert details.status_code == 200, details.text
                ref = reference()
                body = {
                    "token": token,
                    "reference": ref,
                    "session_id": details.json()["session_id"],
                    "package_code": 9,
                    "duration_code": "1",
                    "amount": 999,
                }
                response = await http.post(COMMIT, json=body)
                assert response.status_code == 200, response.text
                assert response.json()["state"] == "Success"
                [applied] = simulator.applied().body["payments"]  # type: ignore[index]
                raw = applied["receipt"]
                assert raw.endswith(isp_sim.HOSTILE_RECEIPT)
                safe = raw.removesuffix(isp_sim.HOSTILE_RECEIPT) + "\\x00\\x1b[2J\\u202e"
                assert response.json()["detail"] == safe
                status = await http.get(STATUS, params={"token": token, "reference": ref})
                assert status.json()["details"] == f"Transaction successful; ISP receipt {safe}"
            await assert_books_balance(gateway.db)
    finally:
        await isp_sim.stop(server, simulator)
