"""The dashboard and the console together: what a merchant's staff raise on the dashboard
an operator decides in the console, and the merchant reads the outcome, money included.
And a merchant's staff reach no other merchant's data through an id in a URL or a form."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import Browser, expect

from tests.support import Server, cli, cli_json
from tests.web.browser import Tab, first_sign_in, new_tab
from tests.web.test_dashboard import api_get, eventually, pay, post_answer, signed_in_merchant


def signed_in_operator(browser: Browser, server: Server, email: str) -> Tab:
    """An operator made by the CLI, signed in to the console in a browser of their own."""
    made = cli_json(server.db_url, "operator", "add-user", email)
    tab = new_tab(browser, server)
    first_sign_in(tab, "console", email, str(made["password"]))
    return tab


def available_paisa(tab: Tab) -> int:
    """The TEST balance available, as the dashboard's overview shows it."""
    tab.go("/dashboard/")
    tab.check_page()
    shown = tab.page.locator(".card", has_text="TEST").locator(".big").inner_text()
    found = re.fullmatch(r"Rs ([\d,]+)\.(\d\d)", shown.strip())
    assert found is not None, shown
    return int(found.group(1).replace(",", "")) * 100 + int(found.group(2))


def test_a_dispute_and_a_credit_request_go_from_the_dashboard_to_the_console_and_back(
    browser: Browser, server: Server
) -> None:
    merchant, created = signed_in_merchant(browser, server, "Across Shop")
    operator = signed_in_operator(browser, server, "ops@gateway.example")
    merchant_id = int(str(created["merchant_id"]))
    paid = pay(server, str(created["test_token"]), "across-1")
    assert paid["state"] == "Success"
    before_paisa = available_paisa(merchant)

    # The merchant raises a dispute of the payment on the dashboard.
    merchant.go("/dashboard/disputes")
    merchant.page.get_by_label("Your reference of the payment").fill("across-1")
    merchant.page.get_by_label("Reason").fill("The subscriber says the plan never started")
    assert post_answer(merchant, "Raise the dispute") == 303
    expect(merchant.page.locator("tbody tr").first).to_contain_text("open")
    merchant.check_page()

    # The operator finds it open in the console and refunds it all.
    operator.go("/console/disputes")
    row = operator.page.locator("tbody tr", has_text="across-1")
    expect(row).to_contain_text(f"#{merchant_id}")
    expect(row).to_contain_text("The subscriber says the plan never started")
    row.locator("summary", has_text="Resolve").click()
    row.get_by_label("Outcome").select_option("refund")
    row.get_by_label("Note (the merchant reads it)").fill("ISP confirmed: refunded")
    row.get_by_role("button", name="Resolve the dispute").click()
    expect(operator.page.get_by_role("status")).to_be_visible()
    operator.check_page()
    operator.go("/console/disputes?show=all")
    expect(operator.page.locator("tbody tr", has_text="across-1")).to_contain_text("Refunded")

    # The merchant reads it refunded, and its balance grew by the refund.
    merchant.go("/dashboard/disputes")
    mine = merchant.page.locator("tbody tr", has_text="across-1")
    expect(mine).to_contain_text("refunded")
    expect(mine).to_contain_text("ISP confirmed: refunded")
    refund_shown = mine.locator("td.num").nth(1).inner_text().strip()
    assert refund_shown == "1,695.00"
    merchant.check_page()
    assert available_paisa(merchant) == before_paisa + 1695_00
    answered = api_get(server, "/api/disputes/", str(created["test_token"])).json()["results"]
    assert [(d["status"], d["refund_amount"]) for d in answered] == [("refunded", 1695.0)]

    # Likewise credits: asked on the dashboard, approved in the console, loaded.
    merchant.go("/dashboard/credit-requests")
    merchant.page.get_by_label("TEST credits, rupees").fill("2500")
    assert post_answer(merchant, "Ask for the credits") == 303
    notice = merchant.page.get_by_role("status").inner_text()
    asked = re.search(r"Credit request (\d+) is sent", notice)
    assert asked is not None, notice
    operator.go("/console/credit-requests")
    waiting = operator.page.locator("tbody tr", has_text=f"#{merchant_id}")
    expect(waiting).to_contain_text("2,500.00")
    waiting.get_by_role("button", name="Approve").click()
    expect(operator.page.get_by_role("status")).to_be_visible()
    operator.check_page()
    merchant.go("/dashboard/credit-requests")
    expect(merchant.page.locator("tbody tr", has_text="2,500.00")).to_contain_text("approved")
    merchant.check_page()
    assert available_paisa(merchant) == before_paisa + 1695_00 + 2500_00


# Nothing listens here: their callback stays undelivered, to replay.
DEAD_URL = "http://127.0.0.1:9/dlr"


def audit_of(server: Server, merchant_id: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(
        cli(server.db_url, "audit", "--merchant", str(merchant_id), "--json")
        .strip()
        .splitlines()[-1]
    )
    return entries


def csrf_of(tab: Tab) -> str:
    """The session's form token, as the current page's forms carry it."""
    token = tab.page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


def test_a_merchants_staff_reach_no_other_merchants_data_by_its_ids(
    browser: Browser, server: Server
) -> None:
    mine, _ = signed_in_merchant(browser, server, "Nosy Shop")
    theirs, created = signed_in_merchant(browser, server, "Private Shop")
    their_id = int(str(created["merchant_id"]))
    their_token = str(created["test_token"])
    # Their data, each with the id that names it, as their own staff see it.
    cli(server.db_url, "merchant", "set-callback", str(their_id), DEAD_URL, "--env", "test")
    # The sandbox's slow subscriber: Processing, then a delivery report, to their URL.
    assert pay(server, their_token, "private-2", "slow-user")["state"] == "Processing"
    assert pay(server, their_token, "private-1")["state"] == "Success"
    theirs.go("/dashboard/disputes")
    theirs.page.get_by_label("Your reference of the payment").fill("private-1")
    theirs.page.get_by_label("Reason").fill("Theirs")
    assert post_answer(theirs, "Raise the dispute") == 303
    theirs.go("/dashboard/tokens")
    revoke_href = theirs.page.get_by_role("link", name=re.compile("^Revoke")).first
    token_path = str(revoke_href.get_attribute("href"))
    assert re.fullmatch(r"/dashboard/tokens/\d+/revoke", token_path), token_path
    replay_form = theirs.page.locator("form[action*='/replay']").first

    def callback_listed() -> bool:
        theirs.go("/dashboard/callbacks")
        return replay_form.count() == 1

    eventually(callback_listed)
    callback_path = str(replay_form.get_attribute("action"))
    assert re.fullmatch(r"/dashboard/callbacks/\d+/replay", callback_path), callback_path
    audit_before = audit_of(server, their_id)
    disputes_before = api_get(server, "/api/disputes/", their_token).json()["results"]

    mine.go("/dashboard/tokens")
    csrf = csrf_of(mine)
    # GET: the token's revoke page.
    shown = mine.page.goto(server.base_url + token_path)
    assert shown is not None and shown.status == 404
    mine.check_page()
    # POST: the token's revocation and the callback's replay.
    for path in (token_path, callback_path):
        answer = mine.page.request.post(
            server.base_url + path, form={"csrf_token": csrf}, max_redirects=0
        )
        assert answer.status == 404, (path, answer.status)
    # POST: a dispute of their payment, by its reference: no such payment of ours.
    mine.go("/dashboard/disputes")
    mine.page.get_by_label("Your reference of the payment").fill("private-1")
    mine.page.get_by_label("Reason").fill("Not mine to dispute")
    assert post_answer(mine, "Raise the dispute") == 400
    expect(mine.page.get_by_role("alert")).to_have_text(
        "No payment with this reference for this token"
    )
    expect(mine.page.locator("tbody tr")).to_have_count(0)
    mine.check_page()
    # GET: their payment by its reference in the filters and the export.
    mine.go("/dashboard/transactions?reference=private-1")
    expect(mine.page.locator("tbody tr")).to_have_count(0)
    exported = mine.page.request.get(
        server.base_url + "/dashboard/transactions.csv?reference=private-1"
    )
    assert exported.status == 200 and "private-1" not in exported.text()
    # No page of ours shows their reference.
    for path in ("/dashboard/disputes", "/dashboard/callbacks", "/dashboard/transactions"):
        mine.go(path)
        assert "private-" not in mine.page.content(), path

    # Nothing changed: their token works, their dispute alone, no new entry in their log
    # (a revocation and a replay each write one), both their tokens active.
    assert api_get(server, "/api/balance/", their_token).status_code == 200
    assert api_get(server, "/api/disputes/", their_token).json()["results"] == disputes_before
    assert audit_of(server, their_id) == audit_before
    theirs.go("/dashboard/tokens")
    expect(theirs.page.locator("tbody tr")).to_have_count(2)
    expect(theirs.page.locator("tbody")).not_to_contain_text("revoked")
