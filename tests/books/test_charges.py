"""Service charges: set per merchant, environment and service by the operator (`bhuktani
charges`), quoted to the merchant (`GET /api/account/service-charges/`,
khalti-docs/servicecharge/service-charge.md), held with the amount by a commit, paid to
the fees account when the payment posts, given back when it fails or is refunded in full.
Merchants call a real server; the operator runs the commands in processes of their own."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bhuktani import audit
from bhuktani.books import charges
from bhuktani.books.charges import Charge
from bhuktani.domain import State
from bhuktani.isps.base import Paid
from bhuktani.ledger import accounts
from bhuktani.ledger.book import Final, book_for
from bhuktani.merchants.service import Principal
from bhuktani.payments import operator, records
from bhuktani.services import registry
from bhuktani.store import Database, connect, query_row
from tests.cli.test_commands import bhuktani, ok, refused_cleanly
from tests.support import Server, arrownet_order, assert_books_balance, eventually, new_merchant

PATH = "/api/account/service-charges/"
ARROWNET = "arrownet"
PRICE_PAISA = 1695_00
FAR_FUTURE_MS = 2**62
# A group of many ISPs, two of them, and an ISP of another group.
GROUP = "hashcnet-v2"
ISP, OTHER_ISP = registry.BY_SLUG[GROUP].isps[:2]
PERCENT_1_5 = Charge(percent_bp=150)


def reference() -> str:
    return f"ch-{uuid.uuid4().hex[:16]}"


# The calculation.


def test_a_flat_charge_is_the_same_on_every_amount() -> None:
    flat = Charge(flat_paisa=10_00)
    assert [flat.of(a) for a in (1, 100_00, 50_000_00)] == [10_00, 10_00, 10_00]


@pytest.mark.parametrize(
    ("amount_paisa", "percent_bp", "charge_paisa"),
    [
        (500_00, 100, 5_00),  # the document's example: 1 % of 500 is 5.0
        (1695_00, 150, 25_43),  # 25.425 rounds half up
        (333, 150, 5),  # 4.995
        (50, 100, 1),  # 0.5: half rounds up
        (49, 100, 0),  # 0.49 rounds down
        (1, 1, 0),
        (1695_00, 0, 0),
        (1695_00, 10_000, 1695_00),  # 100 %
    ],
)
def test_a_percent_charge_rounds_half_up_to_the_paisa(
    amount_paisa: int, percent_bp: int, charge_paisa: int
) -> None:
    assert Charge(percent_bp=percent_bp).of(amount_paisa) == charge_paisa


def test_a_percent_charge_stays_within_its_min_and_max() -> None:
    bounded = Charge(percent_bp=200, min_paisa=5_00, max_paisa=20_00)
    assert bounded.of(100_00) == 5_00  # 2.00 is below the minimum
    assert bounded.of(500_00) == 10_00
    assert bounded.of(5000_00) == 20_00  # 100.00 is above the maximum
    assert Charge(percent_bp=200, min_paisa=5_00).of(5000_00) == 100_00
    assert Charge(percent_bp=200, max_paisa=20_00).of(100_00) == 2_00


@pytest.mark.parametrize(
    ("text", "bp"), [("1.5", 150), ("0", 0), ("100", 10_000), ("12.25", 1225), ("0.01", 1)]
)
def test_a_percent_is_read_exactly_in_hundredths(text: str, bp: int) -> None:
    assert charges.parse_percent(text) == bp


@pytest.mark.parametrize("text", ["100.01", "101", "1.555", "-1", "1e1", "", "１", "1_0", "abc"])
def test_a_percent_beyond_100_or_2_decimals_is_refused(text: str) -> None:
    with pytest.raises(charges.ChargeError):
        charges.parse_percent(text)


def test_an_isps_own_charge_wins_over_its_groups() -> None:
    rules = {GROUP: Charge(flat_paisa=5_00), ISP: Charge(flat_paisa=1_00)}
    assert charges.charge_for(rules, GROUP, ISP) == Charge(flat_paisa=1_00)
    assert charges.charge_for(rules, GROUP, OTHER_ISP) == Charge(flat_paisa=5_00)
    assert charges.charge_of_slug(rules, ISP) == Charge(flat_paisa=1_00)
    assert charges.charge_of_slug(rules, OTHER_ISP) == Charge(flat_paisa=5_00)
    assert charges.charge_of_slug(rules, GROUP) == Charge(flat_paisa=5_00)
    assert charges.charge_of_slug({}, ISP) is None


# The operator's charges, stored.


async def set_charge(db: Database, merchant_id: int, service: str, charge: Charge) -> None:
    await charges.set_charge(db, merchant_id, "test", service, charge, operator="sita")


async def test_set_replaces_and_clear_removes_each_audited(db: Database) -> None:
    merchant = await new_merchant(db)
    await set_charge(db, merchant.merchant_id, GROUP, Charge(flat_paisa=5_00))
    await set_charge(
        db, merchant.merchant_id, GROUP, Charge(percent_bp=150, min_paisa=1_00, max_paisa=9_00)
    )
    listed = await charges.listing(db, merchant.merchant_id)
    assert [(e.env, e.service, e.charge) for e in listed] == [
        ("test", GROUP, Charge(percent_bp=150, min_paisa=1_00, max_paisa=9_00))
    ]
    removed = await charges.clear_charge(db, merchant.merchant_id, "test", GROUP, operator="sita")
    assert removed.percent_bp == 150
    assert await charges.listing(db, merchant.merchant_id) == []
    with pytest.raises(charges.ChargeError):
        await charges.clear_charge(db, merchant.merchant_id, "test", GROUP, operator="sita")

    entries = await audit.listing(db, merchant_id=merchant.merchant_id, action="charges")
    assert [(e["action"], e["subject"], e["operator"]) for e in entries] == [
        ("charges.clear", GROUP, "sita"),
        ("charges.set", GROUP, "sita"),
        ("charges.set", GROUP, "sita"),
    ]
    assert entries[1]["details"] == {"flat": None, "percent": "1.50", "min": "1.00", "max": "9.00"}


async def test_a_charge_on_an_unknown_service_or_merchant_is_refused(db: Database) -> None:
    merchant = await new_merchant(db)
    with pytest.raises(charges.ChargeError, match="no service"):
        await set_charge(db, merchant.merchant_id, "no-such-isp", Charge(flat_paisa=1))
    with pytest.raises(charges.ChargeError, match="no merchant"):
        await set_charge(db, 987_654_321, GROUP, Charge(flat_paisa=1))
    assert await charges.listing(db, merchant.merchant_id) == []


async def test_a_cached_charge_changes_within_the_cache_time(db: Database) -> None:
    merchant = await new_merchant(db)
    principal = Principal(merchant.merchant_id, "test", "all")
    cached, uncached = charges.ChargeCache(3600), charges.ChargeCache(0)
    assert await cached.charge_paisa(db, principal, ARROWNET, ARROWNET, PRICE_PAISA) == 0
    await set_charge(db, merchant.merchant_id, ARROWNET, Charge(flat_paisa=10_00))
    # Kept in the process: no query per commit once cached, "none" included.
    assert await cached.charge_paisa(db, principal, ARROWNET, ARROWNET, PRICE_PAISA) == 0
    assert await uncached.charge_paisa(db, principal, ARROWNET, ARROWNET, PRICE_PAISA) == 10_00


# The operator's commands, as the operator runs them.


async def test_the_charges_commands_set_list_and_clear(db_url: str, db: Database) -> None:
    merchant = await new_merchant(db)
    mid = str(merchant.merchant_id)
    await ok(db_url, "charges", "set", mid, GROUP, "--percent", "1.5", "--min", "2", "--max", "50",
             "--env", "test", "--operator", "ram")  # fmt: skip
    await ok(db_url, "charges", "set", mid, ISP, "--flat", "0", "--env", "test")
    listed = json.loads(await ok(db_url, "charges", "list", mid, "--json"))
    # By merchant, environment and service.
    assert [(e["env"], e["service"], e["flat"], e["percent"], e["min"], e["max"]) for e in listed] == sorted([
        ("test", GROUP, None, "1.50", "2.00", "50.00"),
        ("test", ISP, "0.00", None, None, None),
    ], key=lambda e: str(e[1]))  # fmt: skip
    assert all(e["merchant_id"] == merchant.merchant_id for e in listed)
    assert GROUP in await ok(db_url, "charges", "list")
    await ok(db_url, "charges", "clear", mid, ISP, "--env", "test")
    listed = json.loads(await ok(db_url, "charges", "list", mid, "--json"))
    assert [e["service"] for e in listed] == [GROUP]
    entries = await audit.listing(db, merchant_id=merchant.merchant_id, action="charges")
    assert [e["action"] for e in entries] == ["charges.clear", "charges.set", "charges.set"]
    entry = entries[-1]
    assert (entry["operator"], entry["env"], entry["subject"]) == ("ram", "test", GROUP)


@pytest.mark.parametrize(
    "args",
    [
        ("no-such-isp", "--flat", "1"),
        (GROUP, "--flat", "1", "--percent", "1"),
        (GROUP,),
        (GROUP, "--percent", "100.5"),
        (GROUP, "--percent", "1.555"),
        (GROUP, "--percent", "1", "--min", "10", "--max", "5"),
        (GROUP, "--flat", "1", "--max", "5"),
        (GROUP, "--flat", "abc"),
        (GROUP, "--flat", "1", "--env", "prod"),
    ],
)
async def test_the_set_command_refuses_a_bad_charge_and_changes_nothing(
    db_url: str, db: Database, args: tuple[str, ...]
) -> None:
    merchant = await new_merchant(db)
    done = await bhuktani(db_url, "charges", "set", str(merchant.merchant_id), *args)
    assert refused_cleanly(done), done
    assert await charges.listing(db, merchant.merchant_id) == []
    assert await audit.listing(db, merchant_id=merchant.merchant_id, action="charges") == []


# The merchant's quote, over a real socket.


async def quote(
    server: Server, params: dict[str, Any] | None = None, **body: Any
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        if params is not None:
            return await http.get(PATH, params=params)
        return await http.request("GET", PATH, json=body)


async def test_the_quote_answers_the_documents_shape(server: Server, db: Database) -> None:
    merchant = await new_merchant(db)
    await set_charge(db, merchant.merchant_id, GROUP, Charge(percent_bp=100))
    response = await quote(server, token=merchant.test_token, service_slug=GROUP, amount=500)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": True, "details": {"amount": 500, "service_charge": 5.0}}
    assert type(response.json()["details"]["service_charge"]) is float
    assert b'"service_charge":5.0' in response.content

    by_query = await quote(
        server, {"token": merchant.test_token, "service_slug": ISP, "amount": "1695.50"}
    )
    assert by_query.json() == {
        "status": True,
        "details": {"amount": 1695.5, "service_charge": 16.96},  # 16.955 rounds up
    }


async def test_the_isps_own_charge_wins_in_the_quote(server: Server, db: Database) -> None:
    merchant = await new_merchant(db)
    await set_charge(db, merchant.merchant_id, GROUP, Charge(flat_paisa=5_00))
    await set_charge(db, merchant.merchant_id, ISP, Charge(flat_paisa=1_25))
    answers = {}
    for slug in (GROUP, ISP, OTHER_ISP, ARROWNET):
        response = await quote(server, token=merchant.test_token, service_slug=slug, amount=100)
        answers[slug] = response.json()["details"]["service_charge"]
    assert answers == {GROUP: 5.0, ISP: 1.25, OTHER_ISP: 5.0, ARROWNET: 0.0}
    # Another environment's charges are its own.
    live = await quote(server, token=merchant.live_token, service_slug=GROUP, amount=100)
    assert live.json()["details"]["service_charge"] == 0.0


BAD_QUOTES = [
    ({"service_slug": "no-such-isp", "amount": 100}, "service_slug"),
    ({"amount": 100}, "service_slug"),
    ({"service_slug": 7, "amount": 100}, "service_slug"),
    ({"service_slug": GROUP}, "amount"),
    ({"service_slug": GROUP, "amount": "abc"}, "amount"),
    ({"service_slug": GROUP, "amount": 100.001}, "amount"),
    ({"service_slug": GROUP, "amount": -5}, "amount"),
    ({"service_slug": GROUP, "amount": True}, "amount"),
]


async def test_a_bad_quote_is_1010_on_its_field(server: Server, db: Database) -> None:
    merchant = await new_merchant(db)
    for body, field in BAD_QUOTES:
        response = await quote(server, token=merchant.test_token, **body)
        assert response.status_code == 400, (body, response.text)
        answer = response.json()
        assert (answer["status"], answer["error_code"], answer["error"]) == (
            False,
            "1010",
            "validation_error",
        ), body
        assert list(answer["error_data"]) == [field], body


async def test_a_quote_without_a_token_is_1001(server: Server) -> None:
    response = await quote(server, service_slug=GROUP, amount=100)
    assert response.status_code == 400
    assert response.json()["error_code"] == "1001"


# A charged payment, over HTTP through the sandbox.


@dataclass(frozen=True)
class Merchant:
    balance_paisa: int
    held_paisa: int
    consumed_paisa: int

    @property
    def available_paisa(self) -> int:
        return self.balance_paisa - self.held_paisa


async def merchant_books(db: Database, merchant_id: int) -> Merchant:
    row = await query_row(
        db,
        "SELECT balance_paisa, held_paisa, consumed_paisa FROM accounts"
        " WHERE kind = 'merchant' AND env = 'test' AND merchant_id = $1",
        merchant_id,
    )
    assert row is not None
    return Merchant(int(row["balance_paisa"]), int(row["held_paisa"]), int(row["consumed_paisa"]))


async def account_balance(db: Database, kind: str, code: str) -> int:
    row = await query_row(
        db,
        "SELECT balance_paisa FROM accounts WHERE kind = $1 AND env = 'test' AND code = $2",
        kind,
        code,
    )
    return 0 if row is None else int(row["balance_paisa"])


async def fees_of(db: Database, payment_id: int) -> int:
    return await account_balance(db, accounts.FEES_KIND, accounts.fees_code(payment_id))


async def isp_of(db: Database, payment_id: int) -> int:
    return await account_balance(db, "isp", accounts.isp_code(ARROWNET, payment_id))


async def commit(server: Server, token: str, username: str, ref: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        return await http.post(
            f"/api/servicegroup/commit/{ARROWNET}/",
            json={
                "token": token,
                "username": username,
                "amount": "1695.00",
                "duration": 1,
                "reference": ref,
            },
        )


async def status(server: Server, token: str, ref: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        response = await http.get("/api/service/status/", params={"token": token, "reference": ref})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def balance(server: Server, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        response = await http.get("/api/balance/", params={"token": token})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def payment_row(db: Database, merchant_id: int, ref: str) -> dict[str, Any]:
    row = await query_row(
        db,
        "SELECT p.id, p.state, p.amount_paisa, p.charge_paisa, t.amount_paisa AS hold_paisa"
        " FROM payments p JOIN transfers t ON t.id = p.hold_transfer_id"
        " WHERE p.merchant_id = $1 AND p.env = 'test' AND p.reference = $2",
        merchant_id,
        ref,
    )
    assert row is not None
    return {k: (v if k == "state" else int(v)) for k, v in dict(row).items()}


CHARGE_PAISA = 10_00


async def charged_merchant(db: Database, test_rupees: int = 100_000) -> Any:
    merchant = await new_merchant(db, test_rupees=test_rupees)
    await set_charge(db, merchant.merchant_id, ARROWNET, Charge(flat_paisa=CHARGE_PAISA))
    return merchant


async def test_a_charged_payment_holds_both_then_pays_the_fee_on_success(
    server: Server, db: Database
) -> None:
    merchant = await charged_merchant(db)
    before = await merchant_books(db, merchant.merchant_id)
    ref = reference()
    response = await commit(server, merchant.test_token, "slow-user", ref)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "Processing"

    paid = await payment_row(db, merchant.merchant_id, ref)
    assert (paid["amount_paisa"], paid["charge_paisa"]) == (PRICE_PAISA, CHARGE_PAISA)
    assert paid["hold_paisa"] == PRICE_PAISA + CHARGE_PAISA, "one hold of amount and charge"
    held = await merchant_books(db, merchant.merchant_id)
    assert held.held_paisa == PRICE_PAISA + CHARGE_PAISA
    assert held.available_paisa == before.available_paisa - PRICE_PAISA - CHARGE_PAISA
    fees_before = await fees_of(db, paid["id"])
    isp_before = await isp_of(db, paid["id"])

    async def success() -> bool:
        return (await status(server, merchant.test_token, ref))["state"] == "Success"

    await eventually(success, timeout_s=15)
    assert await fees_of(db, paid["id"]) == fees_before + CHARGE_PAISA
    assert await isp_of(db, paid["id"]) == isp_before + PRICE_PAISA
    after = await merchant_books(db, merchant.merchant_id)
    assert after.held_paisa == 0
    assert after.available_paisa == before.available_paisa - PRICE_PAISA - CHARGE_PAISA
    shown = await balance(server, merchant.test_token)
    assert shown["credits_consumed"] == (PRICE_PAISA + CHARGE_PAISA) / 100
    looked_up = await status(server, merchant.test_token, ref)
    assert (looked_up["refunded"], looked_up["refunds"]) == (False, []), "a fee is no refund"
    await assert_books_balance(db)


async def test_a_charged_payment_that_succeeds_at_once_pays_the_fee_in_one_statement(
    server: Server, db: Database
) -> None:
    merchant = await charged_merchant(db)
    before = await merchant_books(db, merchant.merchant_id)
    ref = reference()
    response = await commit(server, merchant.test_token, "Pradhanang", ref)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["state"] == "Success"
    # What this payment took: its amount and its charge.
    assert answer["credits_consumed"] == (PRICE_PAISA + CHARGE_PAISA) / 100
    paid = await payment_row(db, merchant.merchant_id, ref)
    fee = await query_row(
        db,
        "SELECT amount_paisa, note FROM transfers WHERE payment_id = $1 AND kind = 'single'",
        paid["id"],
    )
    assert fee is not None and (int(fee["amount_paisa"]), fee["note"]) == (
        CHARGE_PAISA,
        "service charge",
    )
    assert await fees_of(db, paid["id"]) >= CHARGE_PAISA
    after = await merchant_books(db, merchant.merchant_id)
    assert after.available_paisa == before.available_paisa - PRICE_PAISA - CHARGE_PAISA
    assert after.consumed_paisa == before.consumed_paisa + PRICE_PAISA + CHARGE_PAISA
    await assert_books_balance(db)


@pytest.mark.parametrize("username", ["refuse-user", "lost-user"])
async def test_a_failed_charged_payment_gives_everything_back(
    server: Server, db: Database, username: str
) -> None:
    merchant = await charged_merchant(db)
    before = await merchant_books(db, merchant.merchant_id)
    ref = reference()
    await commit(server, merchant.test_token, username, ref)

    async def failed() -> bool:
        return (await status(server, merchant.test_token, ref))["state"] == "Failed"

    await eventually(failed, timeout_s=15)
    paid = await payment_row(db, merchant.merchant_id, ref)
    assert paid["hold_paisa"] == PRICE_PAISA + CHARGE_PAISA
    assert await merchant_books(db, merchant.merchant_id) == before
    fee_moves = await query_row(
        db,
        "SELECT COUNT(*) AS n FROM transfers WHERE payment_id = $1 AND kind = 'single'",
        paid["id"],
    )
    assert fee_moves is not None and int(fee_moves["n"]) == 0
    await assert_books_balance(db)


async def test_credits_short_of_amount_and_charge_are_1016(server: Server, db: Database) -> None:
    # Enough for the amount, not for the charge on top of it.
    merchant = await charged_merchant(db, test_rupees=1700)
    ref = reference()
    response = await commit(server, merchant.test_token, "Pradhanang", ref)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "1016"
    assert "service charge 10.00" in response.json()["details"]
    assert (await merchant_books(db, merchant.merchant_id)).held_paisa == 0
    # Without the charge, the same credits pay.
    await charges.clear_charge(db, merchant.merchant_id, "test", ARROWNET, operator="sita")
    response = await commit(server, merchant.test_token, "Pradhanang", reference())
    assert response.status_code == 200, response.text
    await assert_books_balance(db)


async def test_a_refund_in_full_returns_the_charge_and_a_partial_one_does_not(
    server: Server, db: Database
) -> None:
    merchant = await charged_merchant(db)
    before = await merchant_books(db, merchant.merchant_id)
    ref = reference()
    response = await commit(server, merchant.test_token, "Pradhanang", ref)
    assert response.json()["state"] == "Success", response.text
    paid = await payment_row(db, merchant.merchant_id, ref)
    fees_paid = await fees_of(db, paid["id"])
    target = operator.Target(ref, merchant.merchant_id, "test")

    part = await operator.refund(db, target, amount_paisa=695_00, note="half", operator="sita")
    assert part.charge_refunded_paisa == 0
    after_part = await merchant_books(db, merchant.merchant_id)
    assert after_part.available_paisa == before.available_paisa - 1000_00 - CHARGE_PAISA
    assert await fees_of(db, paid["id"]) == fees_paid, "the charge stays until the rest"
    await assert_books_balance(db)

    rest = await operator.refund(db, target, amount_paisa=None, note="rest", operator="sita")
    assert (rest.amount_paisa, rest.left_paisa, rest.charge_refunded_paisa) == (
        1000_00,
        0,
        CHARGE_PAISA,
    )
    after = await merchant_books(db, merchant.merchant_id)
    assert after == before, "amount and charge back; consumed back too"
    assert await fees_of(db, paid["id"]) == fees_paid - CHARGE_PAISA
    looked_up = await status(server, merchant.test_token, ref)
    assert looked_up["refunded_amount"] == PRICE_PAISA / 100, "refunds count the amount only"
    assert [r["remarks"] for r in looked_up["refunds"]] == ["half", "rest"]
    shown = (await operator.show(db, target))[0]
    assert [r["note"] for r in shown["refunds"]] == ["half", "rest"]
    assert shown["refunded_amount"] == "1695.00"
    assert shown["charge"] == "10.00"
    with pytest.raises(operator.OperatorError, match="already refunded"):
        await operator.refund(db, target, amount_paisa=None, note="again", operator="sita")
    await assert_books_balance(db)


# The charged settle, raced.


async def held_charged(db: Database) -> tuple[int, int]:
    merchant = await new_merchant(db)
    order = arrownet_order(merchant.merchant_id)
    await records.open_payment(
        book_for(db),
        Principal(merchant.merchant_id, "test", "all"),
        ARROWNET,
        order,
        reference(),
        None,
        first_check_ms=FAR_FUTURE_MS,
        charge_paisa=CHARGE_PAISA,
    )
    return merchant.merchant_id, order.payment_id


@pytest.mark.parametrize("second", [State.SUCCESS, State.FAILED])
async def test_two_finalizes_of_a_charged_payment_at_once_move_it_once(
    db_url: str, second: State
) -> None:
    setup = await connect(db_url)
    first_db, second_db = await connect(db_url), await connect(db_url)
    try:
        merchant_id, payment_id = await held_charged(setup)
        before = await merchant_books(setup, merchant_id)
        fees_before = await fees_of(setup, payment_id)
        results = await asyncio.gather(
            book_for(first_db).finalize(
                payment_id, Final(State.SUCCESS, "Paid", "r-1"), charged=True
            ),
            book_for(second_db).finalize(
                payment_id, Final(second, "Refused", "r-2"), charged=second is State.SUCCESS
            ),
            return_exceptions=True,
        )
        moved = [r for r in results if r is not None and not isinstance(r, BaseException)]
        assert len(moved) == 1, results
        # The loser finds the payment final (None), or its close fails the unique pending id.
        assert all(r is None or isinstance(r, Exception) for r in results if r not in moved)
        state = str(moved[0].row["state"])
        after = await merchant_books(setup, merchant_id)
        assert after.held_paisa == before.held_paisa - PRICE_PAISA - CHARGE_PAISA
        if state == State.SUCCESS:
            assert after.balance_paisa == before.balance_paisa - PRICE_PAISA - CHARGE_PAISA
            assert await fees_of(setup, payment_id) == fees_before + CHARGE_PAISA
        else:
            assert after.available_paisa == before.available_paisa + PRICE_PAISA + CHARGE_PAISA
            assert await fees_of(setup, payment_id) == fees_before
        await assert_books_balance(setup)
    finally:
        for database in (first_db, second_db, setup):
            await database.close()


async def test_the_reconcilers_settle_of_a_charged_payment_pays_the_fee(db: Database) -> None:
    merchant_id, payment_id = await held_charged(db)
    fees_before = await fees_of(db, payment_id)
    settled = await records.settle(
        book_for(db), payment_id, Paid("r-1"), next_check_ms=0, notify=True
    )
    assert settled.state == State.SUCCESS
    assert await fees_of(db, payment_id) == fees_before + CHARGE_PAISA
    assert (await merchant_books(db, merchant_id)).held_paisa == 0
    await assert_books_balance(db)
