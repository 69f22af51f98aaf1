"""The merchant's dashboard in Chromium: transactions (filters, pages, CSV against the
API), statements, tokens (created once, revoked, refused by the API) and callbacks (every
attempt, replayed to a real receiver). Data is made as a merchant makes it: through the
CLI and the HTTP API."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, expect

from tests.receiver import Receiver, receiving
from tests.support import Server, cli, cli_json
from tests.web.browser import PHONE, Tab, first_sign_in, new_tab

ARROWNET_DETAILS = "/api/servicegroup/details/arrownet/"
ARROWNET_COMMIT = "/api/servicegroup/commit/arrownet/"
OPENING_PAISA = 1_000_000_00
ARROWNET_PAISA = 1695_00


def signed_in_merchant(
    browser: Browser, server: Server, name: str, *, viewport: dict[str, int] | None = None
) -> tuple[Tab, dict[str, Any]]:
    """A merchant made by the CLI, one of its staff signed in to the dashboard."""
    created = cli_json(server.db_url, "merchant", "create", name)
    email = f"staff@{name.lower().replace(' ', '-')}.example"
    user = cli_json(server.db_url, "merchant", "add-user", str(created["merchant_id"]), email)
    tab = (
        new_tab(browser, server)
        if viewport is None
        else new_tab(browser, server, viewport=viewport)
    )
    first_sign_in(tab, "dashboard", email, str(user["password"]))
    return tab, created


def pay(server: Server, token: str, reference: str, username: str = "Pradhanang") -> dict[str, Any]:
    """A TEST payment as a merchant's system makes one: the subscriber's details, then
    the commit of its first plan."""
    with httpx.Client(base_url=server.base_url, timeout=15) as http:
        details = http.post(ARROWNET_DETAILS, json={"token": token, "username": username})
        assert details.status_code == 200, details.text
        committed = http.post(
            ARROWNET_COMMIT,
            json={
                "token": token,
                "reference": reference,
                "username": username,
                "amount": "1695.00",
                "duration": 1,
            },
        )
    assert committed.status_code == 200, committed.text
    answer: dict[str, Any] = committed.json()
    return answer


def api_get(server: Server, path: str, token: str, **params: str) -> httpx.Response:
    return httpx.get(
        server.base_url + path,
        params=params,
        headers={"authorization": f"Token {token}"},
        timeout=15,
    )


def eventually(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def rows_of(page_text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(page_text)))


def test_a_payment_made_through_the_api_is_listed_filtered_paged_and_exported(
    browser: Browser, server: Server
) -> None:
    tab, created = signed_in_merchant(browser, server, "Himal Wallet")
    token = str(created["test_token"])
    for reference in ("inv-1", "inv-2", "other-3"):
        assert pay(server, token, reference)["state"] == "Success"

    # The overview counts them: today's volume, the chart by day and by service.
    tab.go("/dashboard/")
    cards = tab.page.locator(".card")
    expect(cards.nth(0)).to_contain_text("Rs 994,915.00")  # 1,000,000 less three payments
    expect(cards.nth(2)).to_contain_text("Rs 5,085.00")  # today
    expect(cards.nth(2)).to_contain_text("3 payments")
    expect(tab.page.get_by_role("img", name="Paid by service")).to_be_visible()
    tab.check_page()
    tab.screenshot("dashboard-overview")

    tab.page.get_by_role("link", name="Transactions").click()
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Transactions, TEST")
    rows = tab.page.locator("tbody tr")
    expect(rows).to_have_count(3)
    first = rows.first
    expect(first).to_contain_text("other-3")  # newest first
    expect(first).to_contain_text("arrownet")
    expect(first).to_contain_text("Pradhanang")
    expect(first).to_contain_text("1,695.00")
    expect(first).to_contain_text("Success")
    expect(first).to_contain_text(" NPT")
    tab.check_page()
    tab.screenshot("dashboard-transactions")

    # Search by reference, and a page of two with the API's cursor behind "Next page".
    tab.page.get_by_label("Search by reference").fill("inv-")
    tab.page.get_by_label("Rows per page").fill("1")
    tab.page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("inv-2")
    tab.page.get_by_role("link", name="Next page").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("inv-1")
    expect(tab.page.get_by_role("link", name="Next page")).to_have_count(0)
    expect(tab.page.get_by_label("Search by reference")).to_have_value("inv-")
    tab.check_page()

    # A state no payment is in, then LIVE, where nothing was paid.
    tab.go("/dashboard/transactions?state=Failed")
    expect(tab.page.get_by_text("No payments match.")).to_be_visible()
    tab.go("/dashboard/transactions?env=live")
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Transactions, LIVE")
    expect(tab.page.get_by_text("No payments match.")).to_be_visible()

    # A filter the API refuses is refused on the page, by its words, with a 400.
    answer = tab.page.goto(server.base_url + "/dashboard/transactions?from=2026-02-30")
    assert answer is not None and answer.status == 400
    expect(tab.page.get_by_role("alert")).to_have_text("from must be a date written YYYY-MM-DD")
    answer = tab.page.goto(
        server.base_url + "/dashboard/transactions?from=2026-07-12&to=2026-07-01"
    )
    assert answer is not None and answer.status == 400
    expect(tab.page.get_by_role("alert")).to_have_text("to is before from")
    tab.check_page()
    answer = tab.page.goto(server.base_url + "/dashboard/transactions.csv?state=Lost")
    assert answer is not None and answer.status == 400
    expect(tab.page.get_by_role("alert")).to_contain_text("state is one of Success")

    # The CSV, through the page's link: every page, the same rows as the API's.
    tab.go("/dashboard/transactions?limit=1")
    with tab.page.expect_download() as download:
        tab.page.get_by_role("link", name="Export CSV (every page)").click()
    exported = rows_of(Path(download.value.path()).read_bytes().decode())
    listed = api_get(server, "/api/transactions/", token)
    assert listed.status_code == 200, listed.text
    results = listed.json()["results"]
    assert [row["reference"] for row in exported] == ["other-3", "inv-2", "inv-1"]
    assert len(exported) == len(results)
    for row, result in zip(exported, results, strict=True):
        assert row["reference"] == result["reference"]
        assert int(row["response_id"]) == result["response_id"]
        assert row["state"] == result["state"]
        assert row["service"] == result["service"] and row["isp"] == result["isp"]
        assert float(row["amount"]) == result["amount"]
        assert float(row["charge"]) == result["charge"]
        assert float(row["refunded_amount"]) == result["refunded_amount"]
        assert row["created_at"] == result["created_at"]
        assert row["details"] == result["details"]
        assert row["username"] == "Pradhanang"
    # The same filters as the page: a reference's start.
    with tab.page.expect_download() as download:
        tab.go("/dashboard/transactions?reference=other")
        tab.page.get_by_role("link", name="Export CSV (every page)").click()
    only = rows_of(Path(download.value.path()).read_bytes().decode())
    assert [row["reference"] for row in only] == ["other-3"]


def test_the_day_statement_adds_up_and_its_csv_is_the_apis(
    browser: Browser, server: Server
) -> None:
    tab, created = signed_in_merchant(browser, server, "Kiosk Pay", viewport=PHONE)
    token = str(created["test_token"])
    pay(server, token, "stmt-1")
    pay(server, token, "stmt-2")
    tab.page.get_by_role("link", name="Statements").click()
    expect(tab.page.get_by_role("heading", level=1)).to_contain_text("Statement of ")
    cards = tab.page.locator(".card")
    expect(cards.nth(0)).to_contain_text("Rs 0.00")  # opened today
    expect(cards.nth(1)).to_contain_text("1,000,000.00")
    expect(cards.nth(2)).to_contain_text("3,390.00")
    closing = OPENING_PAISA - 2 * ARROWNET_PAISA
    expect(cards.nth(5)).to_contain_text(f"Rs {closing // 100:,}.00")
    entries = tab.page.locator("tbody tr")
    expect(entries).to_have_count(3)
    expect(entries.nth(0)).to_contain_text("load")
    expect(entries.nth(2)).to_contain_text("stmt-2")
    tab.check_page()
    tab.screenshot("dashboard-statements")

    day = tab.page.get_by_label("Day (Nepal time)").input_value()
    with tab.page.expect_download() as download:
        tab.page.get_by_role("link", name="Download CSV").click()
    ours = Path(download.value.path()).read_bytes().decode()
    theirs = api_get(server, "/api/statement/", token, date=day, format="csv")
    assert theirs.status_code == 200, theirs.text
    assert ours == theirs.text
    assert len(rows_of(ours)) == 3

    # A day not written as one, and a day to come: a message and a 400, never a 500.
    for asked, said in (
        ("2026-02-30", "Write the date as YYYY-MM-DD, a real day"),
        ("yesterday", "Write the date as YYYY-MM-DD, a real day"),
        ("2999-01-01", "The date is in the future: no statement is known for it yet"),
    ):
        answer = tab.page.goto(f"{server.base_url}/dashboard/statements?date={asked}")
        assert answer is not None and answer.status == 400
        expect(tab.page.get_by_role("alert")).to_have_text(said)
        tab.check_page()
    refused = tab.page.goto(f"{server.base_url}/dashboard/statements.csv?date=2999-01-01")
    assert refused is not None and refused.status == 400


def test_a_token_made_on_the_page_works_until_it_is_revoked_there(
    browser: Browser, server: Server
) -> None:
    tab, created = signed_in_merchant(browser, server, "Token Shop")
    tab.page.get_by_role("link", name="Tokens").click()
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("API tokens")
    listed = tab.page.locator("tbody tr")
    expect(listed).to_have_count(2)  # the TEST and LIVE tokens the CLI made
    tab.page.get_by_label("Environment").select_option("test")
    tab.page.get_by_role("button", name="Create a token").click()
    secret = tab.page.locator(".secret")
    expect(secret).to_have_text(re.compile(r"^TEST:\S+$"))
    expect(tab.page.get_by_text("it is not shown again")).to_be_visible()
    token = secret.inner_text().strip()
    assert token != created["test_token"]
    expect(listed).to_have_count(3)
    tab.check_page()
    tab.screenshot("dashboard-tokens")

    works = api_get(server, "/api/balance/", token)
    assert works.status_code == 200, works.text
    assert works.json()["credits_available"] == OPENING_PAISA / 100

    # Shown once: the list names it by its start only, and a reload shows no secret.
    tab.go("/dashboard/tokens")
    expect(tab.page.locator(".secret")).to_have_count(0)
    assert token not in tab.page.content()
    hint = token[:9] + "…"
    tab.page.get_by_role("link", name=f"Revoke {hint}").click()
    expect(tab.page.get_by_role("heading", level=1)).to_have_text(f"Revoke token {hint}")
    tab.check_page()
    tab.screenshot("dashboard-token-revoke")
    tab.page.get_by_role("button", name=f"Revoke {hint}").click()
    expect(tab.page.get_by_role("status")).to_contain_text(f"Token {hint} is revoked")
    expect(tab.page.locator("tbody tr").first).to_contain_text("revoked")

    def refused() -> bool:
        answer = api_get(server, "/api/balance/", token)
        return answer.status_code != 200 and answer.json()["error_code"] == "1003"

    eventually(refused, timeout_s=5)
    # The merchant's other TEST token is untouched.
    assert api_get(server, "/api/balance/", str(created["test_token"])).status_code == 200

    # Another merchant's token is not this merchant's to see or revoke.
    other = cli_json(server.db_url, "merchant", "create", "Other Shop")
    other_tab, _ = signed_in_merchant(browser, server, "Third Shop")
    other_tab.go("/dashboard/tokens")
    assert str(other["test_token"])[:9] not in other_tab.page.content()
    answer = other_tab.page.goto(server.base_url + "/dashboard/tokens/1/revoke")
    assert answer is not None and answer.status == 404
    # An id no database column holds names nothing, and is no error either.
    answer = other_tab.page.goto(server.base_url + "/dashboard/tokens/99999999999999999999/revoke")
    assert answer is not None and answer.status == 404
    assert api_get(server, "/api/balance/", str(other["test_token"])).status_code == 200


@contextmanager
def receiver_in_a_thread() -> Iterator[Receiver]:
    """tests/receiver.py's receiver, on an event loop of its own thread: this thread's
    belongs to Playwright."""
    ready, stop = threading.Event(), threading.Event()
    found: list[Receiver] = []

    async def serve() -> None:
        async with receiving() as receiver:
            found.append(receiver)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(15), "the receiver did not start"
    try:
        yield found[0]
    finally:
        stop.set()
        thread.join(15)


def test_a_callback_shows_its_attempts_and_is_replayed_to_the_receiver(
    browser: Browser, server: Server
) -> None:
    tab, created = signed_in_merchant(browser, server, "Callback Co")
    merchant_id = str(created["merchant_id"])
    with receiver_in_a_thread() as receiver:
        cli(server.db_url, "merchant", "set-callback", merchant_id, receiver.url, "--env", "test")
        # The sandbox's slow subscriber: Processing at the commit, then Success, and the
        # delivery report goes to the receiver.
        assert pay(server, str(created["test_token"]), "cb-1", "slow-user")["state"] == "Processing"
        eventually(lambda: len(receiver.received) == 1)
        first = receiver.received[0]
        assert first.fields()["reference"] == "cb-1"

        tab.page.get_by_role("link", name="Callbacks").click()
        expect(tab.page.get_by_role("heading", level=1)).to_have_text("Callbacks, TEST")
        row = tab.page.locator("tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("cb-1")
        expect(row).to_contain_text("delivered")
        expect(row.locator("ol li")).to_have_count(1)
        expect(row.locator("ol li")).to_contain_text("HTTP 200")
        tab.check_page()

        replay = row.get_by_role("button", name=re.compile(r"^Replay \d+$"))
        callback_id = replay.inner_text().split()[-1]
        replay.click()
        expect(tab.page.get_by_role("status")).to_contain_text("is queued again")
        eventually(lambda: len(receiver.received) == 2)
        again = receiver.received[1]
        assert again.fields() == first.fields()
        assert again.headers["webhook-id"] == first.headers["webhook-id"]

        def two_attempts() -> bool:
            tab.page.reload()
            return tab.page.locator("tbody tr ol li").count() == 2

        eventually(two_attempts)
        expect(tab.page.locator("tbody tr")).to_contain_text("delivered")
        tab.check_page()
        tab.screenshot("dashboard-callbacks")

    # Another merchant may not replay this one's callback.
    other_tab, _ = signed_in_merchant(browser, server, "Nosy Co")
    other_tab.go("/dashboard/callbacks")
    expect(other_tab.page.get_by_text("No callbacks yet in TEST.")).to_be_visible()
    token = other_tab.page.locator('input[name="csrf_token"]').first.input_value()
    cookies = {c["name"]: c["value"] for c in other_tab.page.context.cookies()}
    forged = httpx.post(
        f"{server.base_url}/dashboard/callbacks/{callback_id}/replay",
        data={"csrf_token": token},
        cookies=cookies,
        follow_redirects=False,
    )
    assert forged.status_code == 404
    assert len(receiver.received) == 2


def test_the_service_charges_the_operator_set_are_listed_and_taken(
    browser: Browser, server: Server
) -> None:
    tab, created = signed_in_merchant(browser, server, "Charged Co")
    merchant_id = str(created["merchant_id"])
    tab.page.get_by_role("link", name="Service charges").click()
    expect(tab.page.get_by_text("No service charges")).to_be_visible()
    cli(server.db_url, "charges", "set", merchant_id, "arrownet", "--flat", "5", "--env", "test")
    cli(
        server.db_url,
        "charges",
        "set",
        merchant_id,
        "hashcnet-v2",
        "--percent",
        "1.5",
        "--min",
        "2",
        "--max",
        "20",
        "--env",
        "live",
    )
    tab.page.reload()
    rows = tab.page.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("LIVE")
    expect(rows.nth(0)).to_contain_text("1.50 % of the amount")
    expect(rows.nth(0)).to_contain_text("2.00")
    expect(rows.nth(0)).to_contain_text("20.00")
    expect(rows.nth(1)).to_contain_text("TEST")
    expect(rows.nth(1)).to_contain_text("Rs 5.00 a payment")
    tab.check_page()
    tab.screenshot("dashboard-charges")

    pay(server, str(created["test_token"]), "charged-1")
    tab.page.get_by_role("link", name="Transactions").click()
    expect(tab.page.locator("tbody tr td.num").nth(1)).to_have_text("5.00")


def test_settings_change_the_callback_url_the_secret_and_the_low_balance_threshold(
    browser: Browser, server: Server
) -> None:
    tab, created = signed_in_merchant(browser, server, "Settings Co")
    tab.page.get_by_role("link", name="Settings").click()
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Settings")
    url_field = tab.page.get_by_label("TEST callback URL (empty: no callbacks)")
    expect(url_field).to_have_value("")
    url_field.fill("ftp://merchant.example/dlr")
    tab.page.get_by_role("button", name="Save the TEST URL").click()
    expect(tab.page.get_by_role("alert")).to_have_text(
        "The TEST callback URL must be http or https"
    )
    tab.check_page()
    tab.page.get_by_label("TEST callback URL (empty: no callbacks)").fill(
        "https://merchant.example/dlr"
    )
    tab.page.get_by_role("button", name="Save the TEST URL").click()
    expect(tab.page.get_by_role("status")).to_have_text("The TEST callback URL is saved.")
    expect(tab.page.get_by_label("TEST callback URL (empty: no callbacks)")).to_have_value(
        "https://merchant.example/dlr"
    )
    expect(tab.page.get_by_label("LIVE callback URL (empty: no callbacks)")).to_have_value("")

    below = tab.page.get_by_label("LIVE low-balance alert below, rupees (empty: none)")
    below.fill("five thousand")
    tab.page.get_by_role("button", name="Save the LIVE threshold").click()
    expect(tab.page.get_by_role("alert")).to_contain_text("Write the threshold in rupees")
    tab.page.get_by_label("LIVE low-balance alert below, rupees (empty: none)").fill("5000.50")
    tab.page.get_by_role("button", name="Save the LIVE threshold").click()
    expect(tab.page.get_by_role("status")).to_have_text("The LIVE low-balance threshold is saved.")
    expect(
        tab.page.get_by_label("LIVE low-balance alert below, rupees (empty: none)")
    ).to_have_value("5,000.50")

    tab.page.get_by_role("button", name="New LIVE signing secret").click()
    expect(tab.page.locator(".secret")).to_have_text(re.compile(r"^whsec_\S+$"))
    expect(tab.page.get_by_text("it is not shown again")).to_be_visible()
    tab.check_page()
    tab.screenshot("dashboard-settings")
    # Each change is in the audit log, under the dashboard user's name.
    logged = cli(server.db_url, "audit", "--merchant", str(created["merchant_id"]), "--json")
    for action in ("merchant.callback_url", "merchant.low_balance", "merchant.callback_secret"):
        assert action in logged
    assert "web:staff@settings-co.example" in logged


def post_answer(tab: Tab, button: str) -> int:
    """Click a form's button: the status of the answer to its POST."""
    with tab.page.expect_response(lambda r: r.request.method == "POST") as answer:
        tab.page.get_by_role("button", name=button).click()
    status: int = answer.value.status
    tab.page.wait_for_load_state()
    return status


def test_a_dispute_is_raised_on_the_page_and_refused_in_the_apis_words(
    browser: Browser, server: Server
) -> None:
    tab, created = signed_in_merchant(browser, server, "Dispute Shop")
    token = str(created["test_token"])
    assert pay(server, token, "disputed-1")["state"] == "Success"
    tab.page.get_by_role("link", name="Disputes").click()
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Disputes, TEST")
    expect(tab.page.get_by_text("No TEST disputes.")).to_be_visible()

    tab.page.get_by_label("Your reference of the payment").fill("never-paid")
    tab.page.get_by_label("Reason").fill("The subscriber was not renewed")
    assert post_answer(tab, "Raise the dispute") == 400
    expect(tab.page.get_by_role("alert")).to_have_text(
        "No payment with this reference for this token"
    )
    # What was written stays in the form, to correct.
    expect(tab.page.get_by_label("Reason")).to_have_value("The subscriber was not renewed")
    tab.check_page()

    tab.page.get_by_label("Your reference of the payment").fill("disputed-1")
    assert post_answer(tab, "Raise the dispute") == 303
    notice = tab.page.get_by_role("status")
    expect(notice).to_contain_text(re.compile(r"Dispute \d+ is raised"))
    rows = tab.page.locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("disputed-1")
    expect(rows.first).to_contain_text("1,695.00")
    expect(rows.first).to_contain_text("open")
    tab.check_page()
    tab.screenshot("dashboard-disputes")

    listed = api_get(server, "/api/disputes/", token).json()["results"]
    assert [(d["reference"], d["status"]) for d in listed] == [("disputed-1", "open")]
    dispute_id = listed[0]["id"]

    # One open dispute of a payment at a time, as the API says.
    tab.page.get_by_label("Your reference of the payment").fill("disputed-1")
    tab.page.get_by_label("Reason").fill("Again")
    assert post_answer(tab, "Raise the dispute") == 400
    expect(tab.page.get_by_role("alert")).to_have_text(
        f"Dispute {dispute_id} of this payment is open already"
    )
    assert len(api_get(server, "/api/disputes/", token).json()["results"]) == 1

    # The LIVE page raises LIVE disputes: the TEST payment is no LIVE payment.
    tab.go("/dashboard/disputes?env=live")
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Disputes, LIVE")
    expect(tab.page.get_by_text("No LIVE disputes.")).to_be_visible()
    tab.page.get_by_label("Your reference of the payment").fill("disputed-1")
    tab.page.get_by_label("Reason").fill("Wrong environment")
    assert post_answer(tab, "Raise the dispute") == 400
    expect(tab.page.get_by_role("alert")).to_have_text(
        "No payment with this reference for this token"
    )
    tab.check_page()


def test_credits_are_asked_for_on_the_page_as_the_api_asks(
    browser: Browser, server: Server
) -> None:
    tab, created = signed_in_merchant(browser, server, "Credit Shop")
    tab.page.get_by_role("link", name="Credit requests").click()
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Credit requests, TEST")
    expect(tab.page.get_by_text("No TEST credit requests.")).to_be_visible()

    for bad in ("five thousand", "0", "10.005", "-5"):
        tab.page.get_by_label("TEST credits, rupees").fill(bad)
        assert post_answer(tab, "Ask for the credits") == 400, bad
        expect(tab.page.get_by_role("alert")).to_have_text("Invalid Credit")
    expect(tab.page.locator("tbody tr")).to_have_count(0)
    tab.check_page()

    tab.page.get_by_label("TEST credits, rupees").fill("5,000.50")
    assert post_answer(tab, "Ask for the credits") == 303
    expect(tab.page.get_by_role("status")).to_contain_text(
        re.compile(r"Credit request \d+ is sent")
    )
    # The API's own request lands beside it, newest first.
    asked = httpx.post(
        server.base_url + "/api/public/creditrequest/",
        json={"token": str(created["test_token"]), "credit": 100},
        timeout=15,
    )
    assert asked.status_code == 200, asked.text
    tab.go("/dashboard/credit-requests")
    rows = tab.page.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("100.00")
    expect(rows.nth(1)).to_contain_text("5,000.50")
    expect(rows.nth(1)).to_contain_text("pending")
    tab.check_page()
    tab.screenshot("dashboard-credit-requests")

    tab.go("/dashboard/credit-requests?env=live")
    expect(tab.page.get_by_text("No LIVE credit requests.")).to_be_visible()
