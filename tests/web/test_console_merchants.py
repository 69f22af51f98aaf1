"""The console's merchant pages in Chromium: a merchant created on the page whose shown
TEST token works on the API, and one merchant's rate limit, service charges and credits
changed on its page, each refusal shown with nothing changed and each effect seen
through the merchant's API."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import Browser, Locator, expect

from bhuktani.services import registry
from tests.support import Server, cli_json
from tests.web.browser import Tab, first_sign_in, new_tab
from tests.web.test_console import audit_entries, available

# How long a running server may keep a merchant's charges and limits cached.
CACHE_WAIT_S = 30


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def operator_tab(browser: Browser, server: Server) -> tuple[Tab, str]:
    email = f"{unique('ops')}@gateway.example"
    made = cli_json(server.db_url, "operator", "add-user", email)
    tab = new_tab(browser, server)
    first_sign_in(tab, "console", email, str(made["password"]))
    return tab, email


def submitted(tab: Tab, button: Locator) -> int:
    """Click a form's button: the status of the page that answers."""
    with tab.page.expect_navigation() as answered:
        button.click()
    response = answered.value
    assert response is not None
    return response.status


def eventually(read: Callable[[], Any], wanted: Any) -> None:
    """A running server takes a change within its cache's time."""
    deadline = time.monotonic() + CACHE_WAIT_S
    while (seen := read()) != wanted:
        assert time.monotonic() < deadline, (seen, wanted)
        time.sleep(0.5)


def actions_by(server: Server, merchant_id: int, email: str) -> list[str]:
    return [
        e["action"]
        for e in reversed(audit_entries(server))
        if e["merchant_id"] == merchant_id and e["operator"] == f"web:{email}"
    ]


def test_a_merchant_created_on_the_page_uses_its_shown_test_token(
    browser: Browser, server: Server
) -> None:
    tab, email = operator_tab(browser, server)
    tab.go("/console/merchants")
    tab.page.get_by_role("link", name="New merchant").click()
    tab.page.wait_for_url("**/console/merchants/new")
    tab.check_page()
    tab.screenshot("console-merchant-new")
    name = f"Page Made {unique('m')}"

    # A refusal keeps what was typed and makes nothing.
    tab.page.get_by_label("Name").fill(name)
    tab.page.get_by_label("TEST credits (Rs)").fill("12.345")
    assert submitted(tab, tab.page.get_by_role("button", name="Create the merchant")) == 400
    expect(tab.page.get_by_role("alert")).to_contain_text("The TEST credits")
    expect(tab.page.get_by_label("Name")).to_have_value(name)
    tab.page.get_by_label("TEST credits (Rs)").fill("2500.50")
    tab.page.get_by_label("Only the ones checked:").check()
    assert submitted(tab, tab.page.get_by_role("button", name="Create the merchant")) == 400
    expect(tab.page.get_by_role("alert")).to_have_text("Choose all services, or at least one")
    assert not [e for e in audit_entries(server) if e["details"].get("name") == name]

    # Only HashCNet V2: Arrownet is refused to it.
    hashcnet = registry.BY_SLUG["hashcnet-v2"]
    tab.page.get_by_label(f"{hashcnet.title} (hashcnet-v2)").check()
    tab.page.get_by_label("LIVE credits (Rs)").fill("0")
    tab.page.get_by_label("Callback URL (optional, both environments until set apart)").fill(
        "https://shop.example/bhuktani"
    )
    with tab.page.expect_navigation() as answered:
        tab.page.get_by_role("button", name="Create the merchant").click()
    response = answered.value
    assert response is not None and response.status == 200
    assert set(response.headers["cache-control"].split("\n")) == {"no-store"}
    # The secrets are in the POST's answer, never in a URL.
    assert tab.page.url.endswith("/console/merchants/new"), tab.page.url
    expect(tab.page.get_by_role("status")).to_contain_text("they are not shown again")
    secrets = tab.page.locator(".secret")
    expect(secrets).to_have_count(4)
    test_token = tab.page.locator("#test-token").inner_text().strip()
    live_token = tab.page.locator("#live-token").inner_text().strip()
    assert test_token.startswith("TEST:") and live_token and not live_token.startswith("TEST")
    tab.check_page()
    tab.screenshot("console-merchant-created")

    assert available(server, test_token) == 2500.50
    refused = httpx.post(
        server.base_url + "/api/servicegroup/details/arrownet/",
        json={"token": test_token, "username": "anyone"},
        timeout=30,
    )
    assert refused.json()["error_code"] == "1008", refused.text

    created = [e for e in audit_entries(server) if e["action"] == "merchant.create"]
    made = [e for e in created if e["details"]["name"] == name]
    assert len(made) == 1 and made[0]["operator"] == f"web:{email}"
    assert made[0]["details"]["services"] == "hashcnet-v2"
    assert made[0]["details"]["callback_url"] == "https://shop.example/bhuktani"
    assert test_token not in str(made[0])

    # The new merchant is listed, linked to its page.
    tab.page.get_by_role("link", name="The merchant's page").click()
    expect(tab.page.get_by_role("heading", level=1)).to_contain_text(name)
    tab.page.get_by_role("link", name="the merchants page").click()
    tab.check_page()
    tab.screenshot("console-merchants")
    tab.page.get_by_role("link", name=name).click()
    expect(tab.page.get_by_role("heading", level=1)).to_contain_text(name)


def charge_on(server: Server, token: str, slug: str, amount: str) -> float:
    answer = httpx.get(
        server.base_url + "/api/account/service-charges/",
        params={"token": token, "service_slug": slug, "amount": amount},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return float(answer.json()["details"]["service_charge"])


def test_a_merchants_limit_charges_and_credits_are_changed_on_its_page(
    browser: Browser, server: Server
) -> None:
    made = cli_json(server.db_url, "merchant", "create", f"Tuned {unique('m')}")
    merchant_id, token = int(str(made["merchant_id"])), str(made["test_token"])
    tab, email = operator_tab(browser, server)
    tab.go(f"/console/merchants/{merchant_id}")
    tab.check_page()
    expect(tab.page.get_by_text("the gateway's default", exact=False).first).to_be_visible()

    def alert_after(button: str, reason: str) -> None:
        assert submitted(tab, tab.page.get_by_role("button", name=button)) == 400
        expect(tab.page.get_by_role("alert")).to_have_text(reason)

    # The rate limit: a negative rate is refused; a rate and a burst; the default again.
    tab.page.get_by_label("Requests a second").fill("-5")
    tab.page.get_by_label("Burst").fill("10")
    alert_after("Set the limit", "The requests a second must be a whole number above 0")
    tab.page.get_by_label("Requests a second").fill("7")
    tab.page.get_by_label("Burst").fill("")
    alert_after("Set the limit", "Give the burst")
    assert actions_by(server, merchant_id, email) == []
    tab.page.get_by_label("Requests a second").fill("7")
    tab.page.get_by_label("Burst").fill("14")
    tab.page.get_by_role("button", name="Set the limit").click()
    expect(tab.page.get_by_role("status")).to_contain_text("The rate limit is changed")
    expect(tab.page.locator(".card").nth(3)).to_contain_text("7/s")
    expect(tab.page.locator(".card").nth(3)).to_contain_text("bursts of 14, its own")
    tab.page.get_by_role("button", name="Back to the default").click()
    expect(tab.page.locator(".card").nth(3)).to_contain_text("the gateway's default")
    limits = [
        e["details"]
        for e in audit_entries(server)
        if e["action"] == "merchant.rate_limit" and e["merchant_id"] == merchant_id
    ]
    assert limits == [{"per_s": None, "burst": None}, {"per_s": 7, "burst": 14}]

    # Service charges: an unknown slug and a percent over 100 are refused.
    tab.page.get_by_label("Service or ISP slug").fill("no-such-isp")
    tab.page.get_by_label("Environment").first.select_option("test")
    tab.page.get_by_label("Flat (Rs)").fill("5")
    alert_after(
        "Set the charge",
        "no service 'no-such-isp': name a service group's, a single-step service's or an ISP's slug",
    )
    tab.page.get_by_label("Service or ISP slug").fill("hashcnet-v2")
    tab.page.get_by_label("Environment").first.select_option("test")
    tab.page.get_by_label("Flat (Rs)").fill("5")
    tab.page.get_by_label("or Percent (0 to 100)").fill("1")
    alert_after("Set the charge", "Give a flat charge or a percent, one of the two")
    tab.page.get_by_label("Service or ISP slug").fill("hashcnet-v2")
    tab.page.get_by_label("Environment").first.select_option("test")
    tab.page.get_by_label("or Percent (0 to 100)").fill("150")
    alert_after("Set the charge", "percent '150' is over 100")
    tab.page.get_by_label("Service or ISP slug").fill("hashcnet-v2")
    tab.page.get_by_label("Environment").first.select_option("test")
    tab.page.get_by_label("or Percent (0 to 100)").fill("2")
    tab.page.get_by_label("Percent's minimum (Rs)").fill("50")
    tab.page.get_by_label("Percent's maximum (Rs)").fill("5")
    alert_after("Set the charge", "The minimum is more than the maximum")
    assert charge_on(server, token, "hashcnet-v2", "500") == 0.0

    tab.page.get_by_label("Service or ISP slug").fill("hashcnet-v2")
    tab.page.get_by_label("Environment").first.select_option("test")
    tab.page.get_by_label("or Percent (0 to 100)").fill("2")
    tab.page.get_by_label("Percent's minimum (Rs)").fill("5")
    tab.page.get_by_label("Percent's maximum (Rs)").fill("50")
    tab.page.get_by_role("button", name="Set the charge").click()
    expect(tab.page.get_by_role("status")).to_have_text(
        "The service charge on hashcnet-v2 (test) is set; payments pay it within seconds."
    )
    row = tab.page.get_by_role("row").filter(has_text="hashcnet-v2").filter(has_text="TEST")
    expect(row).to_contain_text("2.00 % (min Rs 5.00, max Rs 50.00)")
    eventually(lambda: charge_on(server, token, "hashcnet-v2", "500"), 10.0)
    assert charge_on(server, token, "hashcnet-v2", "100") == 5.0

    # Credits: an amount the money parser refuses, then a load seen in the balance.
    before = available(server, token)
    tab.page.get_by_label("Amount (Rs)").fill("12.345")
    alert_after("Load", "The amount: Amount has more than 2 decimal places")
    tab.page.get_by_label("Amount (Rs)").fill("-3")
    alert_after("Load", "The amount: Amount must be positive")
    assert available(server, token) == before
    tab.page.get_by_label("Amount (Rs)").fill("250.50")
    tab.page.locator("#load-env").select_option("test")
    tab.page.get_by_label("Note, for the books").fill("Top-up by phone")
    tab.page.get_by_role("button", name="Load").click()
    expect(tab.page.get_by_role("status")).to_contain_text("Credits loaded: transfer")
    assert available(server, token) == before + 250.50
    tab.check_page()
    tab.screenshot("console-merchant")

    # Clearing the charge: the API charges nothing again.
    tab.page.get_by_role("button", name="Clear the TEST charge on hashcnet-v2").click()
    expect(tab.page.get_by_role("status")).to_have_text(
        "The service charge on hashcnet-v2 (test) is cleared."
    )
    eventually(lambda: charge_on(server, token, "hashcnet-v2", "500"), 0.0)
    tab.check_page()
    assert actions_by(server, merchant_id, email) == [
        "merchant.rate_limit",
        "merchant.rate_limit",
        "charges.set",
        "credits.load",
        "charges.clear",
    ]


def test_an_unknown_merchant_has_no_page(browser: Browser, server: Server) -> None:
    tab, _ = operator_tab(browser, server)
    answered = tab.page.goto(server.base_url + "/console/merchants/999999")
    assert answered is not None and answered.status == 404
    expect(tab.page.get_by_role("alert")).to_have_text("No merchant 999999")
    tab.check_page()


def details_code(server: Server, token: str) -> str | None:
    answer = httpx.post(
        server.base_url + "/api/servicegroup/details/arrownet/",
        json={"token": token, "username": "Pradhanang"},
        timeout=30,
    ).json()
    code = answer.get("error_code")
    return None if code is None else str(code)


def test_a_merchants_services_are_changed_on_its_page(browser: Browser, server: Server) -> None:
    created = cli_json(server.db_url, "merchant", "create", unique("Services"))
    merchant_id, token = int(str(created["merchant_id"])), str(created["test_token"])
    assert details_code(server, token) is None
    tab, email = operator_tab(browser, server)
    tab.go(f"/console/merchants/{merchant_id}")
    # Only some, none checked: refused, nothing changed.
    tab.page.get_by_label("Only the ones checked:").check()
    assert submitted(tab, tab.page.get_by_role("button", name="Save the services")) == 400
    expect(tab.page.get_by_role("alert")).to_contain_text("at least one")
    assert details_code(server, token) is None
    tab.page.get_by_label("Only the ones checked:").check()
    tab.page.get_by_label(registry.BY_SLUG["hashcnet-v2"].title, exact=False).first.check()
    assert submitted(tab, tab.page.get_by_role("button", name="Save the services")) == 200
    eventually(lambda: details_code(server, token), "1008")
    tab.page.get_by_label("All services, present and future").check()
    assert submitted(tab, tab.page.get_by_role("button", name="Save the services")) == 200
    eventually(lambda: details_code(server, token), None)
    tab.check_page()
    assert actions_by(server, merchant_id, email).count("merchant.services") == 2
