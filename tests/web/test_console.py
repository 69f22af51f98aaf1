"""The operator's console in Chromium: the queues an operator works through (flagged
payments, disputes, credit requests) and the audit log that records each action, with the
data made through the CLI and the merchants' API as people make it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from bhuktani.clock import nepal_day
from tests.support import Server, cli, cli_json, fast_env, free_port, running_server
from tests.web.browser import Tab, first_sign_in, new_tab


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def flagging_server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server whose sandbox answers slow-user's payments "unknown" for an hour and whose
    reconciler flags an unknown payment at once, instead of after a day."""
    with running_server(
        db_url,
        tmp_path / "server.log",
        BHUKTANI_SANDBOX_SLOW_DELAY_S="3600",
        BHUKTANI_SANDBOX_SETTLE_WINDOW_S="3600",
        BHUKTANI_RECONCILE_FLAG_AFTER_S="0",
    ) as running:
        yield running


def operator_tab(browser: Browser, server: Server) -> tuple[Tab, str]:
    """A new operator, signed in to the console with a password of their own."""
    email = f"{unique('ops')}@gateway.example"
    made = cli_json(server.db_url, "operator", "add-user", email)
    tab = new_tab(browser, server)
    first_sign_in(tab, "console", email, str(made["password"]))
    return tab, email


def new_merchant(server: Server, name: str) -> tuple[int, str]:
    """A merchant made by the CLI: its id and TEST token."""
    created = cli_json(server.db_url, "merchant", "create", name)
    return int(str(created["merchant_id"])), str(created["test_token"])


def pay(server: Server, token: str, username: str, reference: str) -> dict[str, Any]:
    """Arrownet's 50Mbps for a month, through the merchant's API."""
    answer = httpx.post(
        server.base_url + "/api/servicegroup/commit/arrownet/",
        json={
            "token": token,
            "username": username,
            "amount": "1695.00",
            "duration": 1,
            "reference": reference,
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def payment_view(server: Server, reference: str) -> dict[str, Any]:
    views = json.loads(cli(server.db_url, "payment", "show", reference, "--json"))
    assert len(views) == 1, views
    view: dict[str, Any] = views[0]
    return view


def audit_entries(server: Server) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(cli(server.db_url, "audit", "--json"))
    return entries


def available(server: Server, token: str) -> float:
    answer = httpx.get(server.base_url + "/api/balance/", params={"token": token})
    assert answer.status_code == 200, answer.text
    return float(answer.json()["credits_available"])


def flagged_payment(server: Server, token: str) -> dict[str, Any]:
    """slow-user's payment, applied by the sandbox ISP but unknown to us, then flagged."""
    reference = unique("stuck")
    assert pay(server, token, "slow-user", reference)["state"] == "Processing"
    deadline = time.monotonic() + 30
    while not (view := payment_view(server, reference))["flagged"]:
        assert time.monotonic() < deadline, "the reconciler flags the unknown payment"
        time.sleep(0.2)
    return view


def test_an_operator_resolves_a_flagged_payment_and_refunds_a_paid_one(
    browser: Browser, flagging_server: Server
) -> None:
    server = flagging_server
    merchant_id, token = new_merchant(server, "Flag Wallet")
    stuck = flagged_payment(server, token)["reference"]
    tab, email = operator_tab(browser, server)
    tab.go("/console/payments")
    row = tab.page.get_by_role("row").filter(has_text=stuck)
    expect(row).to_contain_text("Flag Wallet")
    expect(row).to_contain_text("1,695.00")
    expect(row).to_contain_text("the ISP has not confirmed it")
    tab.check_page()
    # Resolving without a note is refused and changes nothing.
    row.get_by_text("Resolve", exact=True).click()
    row.get_by_label("Outcome").select_option("success")
    tab.screenshot("console-payments")
    row.get_by_role("button", name="Resolve the payment").click()
    assert payment_view(server, stuck)["state"] == "Processing"  # the browser asked first
    row.get_by_label("Note (why, for the audit)").fill("Arrownet confirmed it on the phone")
    row.get_by_role("button", name="Resolve the payment").click()
    expect(tab.page.get_by_role("status")).to_have_text(f"Payment {stuck} (Success) is resolved.")
    expect(tab.page.get_by_role("row").filter(has_text=stuck)).to_have_count(0)
    tab.check_page()
    assert payment_view(server, stuck)["state"] == "Success"
    resolved = next(e for e in audit_entries(server) if e["subject"] == stuck)
    assert (resolved["action"], resolved["operator"]) == ("payment.resolve", f"web:{email}")
    assert (resolved["merchant_id"], resolved["details"]["state"]) == (merchant_id, "Success")

    # A paid payment the ISP reversed: found by its reference, refunded in part.
    paid = unique("paid")
    assert pay(server, token, "Pradhanang", paid)["state"] == "Success"
    before = available(server, token)
    tab.page.get_by_label("Reference").fill(paid)
    tab.page.get_by_role("button", name="Find").click()
    expect(tab.page.get_by_role("heading", level=3)).to_contain_text(paid)
    tab.page.get_by_label("Amount in rupees").fill("ten")
    tab.page.get_by_label("Note (the merchant reads it)").fill("Reversed by the ISP")
    tab.page.get_by_role("button", name="Refund").click()
    expect(tab.page.get_by_role("alert")).to_contain_text("The amount")
    tab.check_page()
    tab.page.get_by_label("Amount in rupees").fill("500")
    tab.page.get_by_label("Note (the merchant reads it)").fill("Reversed by the ISP")
    tab.page.get_by_role("button", name="Refund").click()
    expect(tab.page.get_by_role("status")).to_have_text(f"Payment {paid} is refunded.")
    expect(tab.page.locator("table").last).to_contain_text("500.00")
    tab.check_page()
    assert available(server, token) == before + 500
    refunded = next(e for e in audit_entries(server) if e["subject"] == paid)
    assert (refunded["action"], refunded["operator"]) == ("payment.refund", f"web:{email}")


def test_a_dispute_raised_through_the_api_is_resolved_in_the_console(
    browser: Browser, server: Server
) -> None:
    merchant_id, token = new_merchant(server, "Dispute Mart")
    reference = unique("disputed")
    assert pay(server, token, "Pradhanang", reference)["state"] == "Success"
    raised = httpx.post(
        server.base_url + "/api/disputes/",
        json={
            "token": token,
            "reference": reference,
            "reason": "The customer's days are not added",
        },
    )
    assert raised.status_code == 200, raised.text
    dispute_id = raised.json()["dispute"]["id"]
    tab, email = operator_tab(browser, server)
    tab.go("/console/disputes")
    row = tab.page.get_by_role("row").filter(has_text=reference)
    expect(row).to_contain_text("Dispute Mart")
    expect(row).to_contain_text("The customer's days are not added")
    expect(row).to_contain_text("1,695.00")
    row.get_by_text("Resolve", exact=True).click()
    tab.check_page()
    # A rejection with an amount is refused: the page says why, nothing changes.
    row.get_by_label("Outcome").select_option("reject")
    row.get_by_label("Refund in rupees").fill("200")
    row.get_by_label("Note (the merchant reads it)").fill("Days were added")
    tab.screenshot("console-disputes")
    row.get_by_role("button", name="Resolve the dispute").click()
    expect(tab.page.get_by_role("alert")).to_have_text(
        "An amount is for a refund; a rejection moves no money"
    )
    tab.check_page()
    row = tab.page.get_by_role("row").filter(has_text=reference)
    row.get_by_text("Resolve", exact=True).click()
    row.get_by_label("Outcome").select_option("refund")
    row.get_by_label("Refund in rupees").fill("200")
    row.get_by_label("Note (the merchant reads it)").fill("Half a month was lost; refunded")
    row.get_by_role("button", name="Resolve the dispute").click()
    expect(tab.page.get_by_role("status")).to_have_text(f"Dispute {dispute_id} is resolved.")
    expect(tab.page.get_by_role("row").filter(has_text=reference)).to_have_count(0)
    tab.page.get_by_role("link", name="All", exact=True).click()
    expect(tab.page.get_by_role("row").filter(has_text=reference)).to_contain_text(
        f"Refunded Rs 200.00 by web:{email}"
    )
    tab.check_page()
    listed = httpx.get(server.base_url + "/api/disputes/", params={"token": token})
    assert listed.status_code == 200, listed.text
    (seen,) = [d for d in listed.json()["results"] if d["id"] == dispute_id]
    assert (seen["status"], seen["refund_amount"]) == ("refunded", 200.0)
    assert seen["note"] == "Half a month was lost; refunded"
    resolved = next(e for e in audit_entries(server) if e["action"] == "disputes.resolve")
    assert (resolved["operator"], resolved["merchant_id"]) == (f"web:{email}", merchant_id)


def ask_credit(server: Server, token: str, credit: str) -> int:
    asked = httpx.post(
        server.base_url + "/api/public/creditrequest/", json={"token": token, "credit": credit}
    )
    assert asked.status_code == 200, asked.text
    assert asked.json()["detail"] == "Credit Requested"
    return int(asked.json()["request_id"])


def test_a_credit_request_is_approved_or_rejected_in_the_console(
    browser: Browser, server: Server
) -> None:
    _, token = new_merchant(server, "Credit Hungry")
    approved = ask_credit(server, token, "5000")
    rejected = ask_credit(server, token, "9999.50")
    before = available(server, token)
    tab, email = operator_tab(browser, server)
    tab.go("/console/credit-requests")
    row = tab.page.get_by_role("row").filter(
        has=tab.page.get_by_role("cell", name=str(approved), exact=True)
    )
    expect(row).to_contain_text("Credit Hungry")
    expect(row).to_contain_text("5,000.00")
    tab.check_page()
    tab.screenshot("console-credit-requests")
    row.get_by_label("Note (required to reject)").fill("Paid in by bank transfer")
    row.get_by_role("button", name="Approve").click()
    expect(tab.page.get_by_role("status")).to_have_text(
        f"Credit request {approved} is approved: the merchant's credits are loaded."
    )
    assert available(server, token) == before + 5000
    # A rejection needs a note.
    row = tab.page.get_by_role("row").filter(
        has=tab.page.get_by_role("cell", name=str(rejected), exact=True)
    )
    row.get_by_role("button", name="Reject").click()
    expect(tab.page.get_by_role("alert")).to_have_text("a note is required and cannot be blank")
    tab.check_page()
    row = tab.page.get_by_role("row").filter(
        has=tab.page.get_by_role("cell", name=str(rejected), exact=True)
    )
    row.get_by_label("Note (required to reject)").fill("No payment received")
    row.get_by_role("button", name="Reject").click()
    expect(tab.page.get_by_role("status")).to_have_text(f"Credit request {rejected} is rejected.")
    assert available(server, token) == before + 5000
    tab.page.get_by_role("link", name="All", exact=True).click()
    expect(
        tab.page.get_by_role("row").filter(
            has=tab.page.get_by_role("cell", name=str(approved), exact=True)
        )
    ).to_contain_text(f"Approved by web:{email}")
    tab.check_page()


def test_the_audit_log_pages_newest_first(browser: Browser, server: Server) -> None:
    merchant_id, _ = new_merchant(server, "Audited")
    for amount in ("100", "200", "300"):
        cli(
            server.db_url,
            "credits",
            "load",
            str(merchant_id),
            amount,
            "--env",
            "test",
            "--operator",
            "cli-ops",
            "--note",
            f"load {amount}",
        )
    tab, _ = operator_tab(browser, server)
    tab.go(f"/console/audit?merchant={merchant_id}&limit=2")
    rows = tab.page.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("amount=300.00")
    expect(rows.nth(1)).to_contain_text("amount=200.00")
    tab.check_page()
    tab.page.get_by_role("link", name="Older entries").click()
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("amount=100.00")
    expect(rows.nth(1)).to_contain_text("merchant.create")
    expect(tab.page.get_by_role("link", name="Older entries")).to_have_count(0)
    tab.page.get_by_role("link", name="Newest").click()
    expect(rows.nth(0)).to_contain_text("amount=300.00")
    tab.go("/console/audit?before=abc")
    expect(tab.page.get_by_role("alert")).to_contain_text("whole number")
    tab.go("/console/audit")
    tab.check_page()
    tab.screenshot("console-audit")


def test_an_operator_disables_and_enables_a_merchant(browser: Browser, server: Server) -> None:
    merchant_id, token = new_merchant(server, f"Switch {unique('m')}")
    assert available(server, token) > 0
    tab, email = operator_tab(browser, server)
    tab.go("/console/merchants")
    row = tab.page.get_by_role("row").filter(
        has=tab.page.get_by_role("cell", name=str(merchant_id), exact=True)
    )
    expect(row).to_contain_text("1,000,000.00")
    tab.check_page()
    tab.screenshot("console-merchants")
    row.get_by_role("button", name="Disable").click()
    expect(tab.page.get_by_role("status")).to_have_text(
        f"Merchant {merchant_id} is disabled: its tokens are refused from now on."
    )
    refused = httpx.get(server.base_url + "/api/balance/", params={"token": token})
    assert refused.status_code != 200 and refused.json()["error_code"] == "1006", refused.text
    row.get_by_role("button", name="Enable").click()
    expect(tab.page.get_by_role("status")).to_contain_text(f"Merchant {merchant_id} is enabled")
    assert available(server, token) > 0
    tab.check_page()
    switched = [
        e
        for e in audit_entries(server)
        if e["action"] == "merchant.status" and e["merchant_id"] == merchant_id
    ]
    assert [e["details"]["status"] for e in switched] == ["active", "disabled"]
    assert {e["operator"] for e in switched} == {f"web:{email}"}


def test_a_settlement_mismatch_is_listed_with_its_payment(
    browser: Browser, flagging_server: Server
) -> None:
    server = flagging_server
    _, token = new_merchant(server, "Settled Shop")
    stuck = flagged_payment(server, token)
    day = nepal_day(int(datetime.fromisoformat(stuck["created_at"]).timestamp() * 1000)).isoformat()
    # The sandbox ISP applied it, we did not count it as paid: theirs only. `settle` exits
    # 2 on mismatches.
    done = subprocess.run(
        [sys.executable, "-m", "bhuktani", "settle", "arrownet", "--date", day, "--env", "test"],
        env=fast_env(server.db_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    tab, _ = operator_tab(browser, server)
    tab.go("/console/settlements")
    row = tab.page.get_by_role("row").filter(has_text=stuck["reference"])
    expect(row).to_contain_text("Theirs only")
    expect(row).to_contain_text("ours is Processing")
    expect(row).to_contain_text("1,695.00")
    expect(tab.page.locator("tbody tr").first).to_contain_text("arrownet")
    tab.check_page()
    tab.screenshot("console-settlements")


def test_isp_health_shows_a_live_isp_that_does_not_answer(
    browser: Browser, db_url: str, tmp_path: Path
) -> None:
    # Arrownet's LIVE system at an address where nothing listens.
    with running_server(
        db_url,
        tmp_path / "server.log",
        BHUKTANI_ISPS__ARROWNET__BASE_URL=f"http://127.0.0.1:{free_port()}",
    ) as server:
        created = cli_json(server.db_url, "merchant", "create", "Live Shop", "--credits", "5000")
        for _ in range(3):
            answer = httpx.post(
                server.base_url + "/api/servicegroup/details/arrownet/",
                json={"token": created["live_token"], "username": "Pradhanang"},
                timeout=30,
            )
            assert answer.status_code != 200, answer.text
        tab, _ = operator_tab(browser, server)
        tab.go("/console/isps")
        breakers = tab.page.locator("section").filter(has_text="Breakers")
        expect(breakers.get_by_role("row").filter(has_text="arrownet")).to_be_visible()
        latency = tab.page.locator("section").filter(has_text="Latency")
        row = latency.get_by_role("row").filter(has_text="arrownet")
        expect(row.first).to_be_visible()
        tab.check_page()
        tab.screenshot("console-isps")
