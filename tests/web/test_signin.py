"""Signing in to the dashboard and the console, in Chromium: the CLI's one-time password,
the first change, the limit on failures, cookies, CSRF, and who may see which area."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Browser, expect

from tests.support import Server, cli, cli_json
from tests.web.browser import (
    NEW_PASSWORD,
    PHONE,
    first_sign_in,
    new_tab,
    sign_in,
)


def test_a_merchant_user_signs_in_changes_the_password_and_sees_its_balances(
    browser: Browser, server: Server
) -> None:
    created = cli_json(server.db_url, "merchant", "create", "Himal Wallet")
    user = cli_json(
        server.db_url, "merchant", "add-user", str(created["merchant_id"]), "Ops@Himal.example"
    )
    assert user["email"] == "ops@himal.example"
    tab = new_tab(browser, server)
    tab.go("/dashboard/")
    assert "/dashboard/login" in tab.page.url
    tab.check_page()
    tab.screenshot("dashboard-login")
    first_sign_in(tab, "dashboard", "ops@himal.example", str(user["password"]))
    expect(tab.page.get_by_role("status")).to_have_text("Your password is changed.")
    expect(tab.page.locator(".card").first).to_contain_text("Rs 1,000,000.00")
    tab.check_page()
    cookies = {c["name"]: c for c in tab.page.context.cookies()}
    session = cookies["bhuktani_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["secure"] is False  # plain HTTP here; Secure when served over TLS
    # The one-time password no longer works; the new one does.
    other = new_tab(browser, server)
    sign_in(other, "dashboard", "ops@himal.example", str(user["password"]))
    expect(other.page.get_by_role("alert")).to_have_text("Wrong email address or password")
    sign_in(other, "dashboard", "ops@himal.example", NEW_PASSWORD)
    expect(other.page.get_by_role("heading", level=1)).to_have_text("Overview")
    # Signing out ends the session: the cookie opens nothing any more.
    other.page.get_by_role("button", name="Sign out").click()
    other.page.wait_for_url("**/dashboard/login")
    assert (
        httpx.get(
            server.base_url + "/dashboard/", cookies={"bhuktani_session": session["value"]}
        ).status_code
        == 200
    )  # the first tab's session is its own, still alive
    gone = httpx.get(
        server.base_url + "/dashboard/",
        cookies={"bhuktani_session": "not-a-session"},
        follow_redirects=False,
    )
    assert gone.status_code == 303 and gone.headers["location"].startswith("/dashboard/login")


def test_failed_sign_ins_are_limited_per_address(browser: Browser, server: Server) -> None:
    created = cli_json(server.db_url, "merchant", "create", "Kiosk")
    user = cli_json(
        server.db_url, "merchant", "add-user", str(created["merchant_id"]), "k@kiosk.example"
    )
    tab = new_tab(browser, server, viewport=PHONE)
    for _ in range(5):
        sign_in(tab, "dashboard", "k@kiosk.example", "wrong password 123")
        expect(tab.page.get_by_role("alert")).to_have_text("Wrong email address or password")
    # The sixth try is refused whatever the password, the right one included.
    sign_in(tab, "dashboard", "k@kiosk.example", str(user["password"]))
    expect(tab.page.get_by_role("alert")).to_contain_text("Too many failed sign-ins")
    tab.check_page()
    tab.screenshot("dashboard-login-limited-phone")


def test_each_area_takes_its_own_users_only(browser: Browser, server: Server) -> None:
    created = cli_json(server.db_url, "merchant", "create", "Bank")
    merchant_user = cli_json(
        server.db_url, "merchant", "add-user", str(created["merchant_id"]), "m@bank.example"
    )
    operator = cli_json(server.db_url, "operator", "add-user", "ops@gateway.example")
    tab = new_tab(browser, server)
    sign_in(tab, "console", "m@bank.example", str(merchant_user["password"]))
    expect(tab.page.get_by_role("alert")).to_have_text("Wrong email address or password")
    first_sign_in(tab, "dashboard", "m@bank.example", str(merchant_user["password"]))
    # Signed in to the dashboard, the console still asks to sign in.
    tab.go("/console/")
    assert "/console/login" in tab.page.url
    first_sign_in(tab, "console", "ops@gateway.example", str(operator["password"]))
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("Overview")
    tab.check_page()
    tab.screenshot("console-overview")


def test_a_form_without_its_csrf_token_is_refused(server: Server) -> None:
    created = cli_json(server.db_url, "merchant", "create", "Shop")
    user = cli_json(
        server.db_url, "merchant", "add-user", str(created["merchant_id"]), "s@shop.example"
    )
    with httpx.Client(base_url=server.base_url, follow_redirects=False) as http:
        http.get("/dashboard/login")
        # The sign-in form itself: without the cookie's token, refused.
        refused = http.post(
            "/dashboard/login",
            data={
                "csrf_token": "forged",
                "email": "s@shop.example",
                "password": str(user["password"]),
            },
        )
        assert refused.status_code == 403
        # The refusal is a new form, with a token of its own.
        token = refused.text.split('name="csrf_token" value="')[1].split('"')[0]
        signed = http.post(
            "/dashboard/login",
            data={
                "csrf_token": token,
                "email": "s@shop.example",
                "password": str(user["password"]),
            },
        )
        assert signed.status_code == 303
        assert signed.headers["location"] == "/dashboard/password"
        # Signed in, a form without the session's token changes nothing.
        forged = http.post(
            "/dashboard/password",
            data={"current": str(user["password"]), "new": NEW_PASSWORD, "again": NEW_PASSWORD},
        )
        assert forged.status_code == 403
        assert "The form has expired" in forged.text
        assert "default-src 'self'" in forged.headers["content-security-policy"]
    # The password is unchanged: the one-time one still signs in.
    with httpx.Client(base_url=server.base_url, follow_redirects=False) as http:
        token = (
            http.get("/dashboard/login").text.split('name="csrf_token" value="')[1].split('"')[0]
        )
        again = http.post(
            "/dashboard/login",
            data={
                "csrf_token": token,
                "email": "s@shop.example",
                "password": str(user["password"]),
            },
        )
        assert again.headers["location"] == "/dashboard/password"


def login_form_token(page_text: str) -> str:
    return page_text.split('name="csrf_token" value="')[1].split('"')[0]


def test_the_demo_prints_users_who_sign_in_and_new_passwords_each_run(server: Server) -> None:
    runs = []
    for _ in range(2):
        out = cli(server.db_url, "demo", "--base-url", server.base_url)
        shown = re.findall(r"^#\s+(\S+)/(dashboard|console)/\s+(\S+)\s+(\S+)$", out, re.MULTILINE)
        assert [(area, email) for _, area, email, _ in shown] == [
            ("dashboard", "demo@bhuktani.example"),
            ("console", "operator@bhuktani.example"),
        ], out
        runs.append(shown)
    assert runs[0][0][3] != runs[1][0][3]
    for _, area, email, password in runs[1]:
        with httpx.Client(base_url=server.base_url, follow_redirects=False) as http:
            token = login_form_token(http.get(f"/{area}/login").text)
            signed = http.post(
                f"/{area}/login", data={"csrf_token": token, "email": email, "password": password}
            )
            assert signed.status_code == 303, signed.text
            assert signed.headers["location"] == f"/{area}/password"
    # The first run's password is gone.
    _, area, email, stale = runs[0][0]
    with httpx.Client(base_url=server.base_url) as http:
        token = login_form_token(http.get(f"/{area}/login").text)
        refused = http.post(
            f"/{area}/login", data={"csrf_token": token, "email": email, "password": stale}
        )
        assert refused.status_code == 401


def test_an_operator_resets_a_lost_password(server: Server) -> None:
    created = cli_json(server.db_url, "merchant", "create", "Lost")
    user = cli_json(
        server.db_url, "merchant", "add-user", str(created["merchant_id"]), "lost@shop.example"
    )
    reset = cli_json(server.db_url, "operator", "reset-password", "lost@shop.example")
    assert reset["email"] == "lost@shop.example" and reset["password"] != user["password"]
    with httpx.Client(base_url=server.base_url, follow_redirects=False) as http:
        for password, status in ((user["password"], 401), (reset["password"], 303)):
            token = login_form_token(http.get("/dashboard/login").text)
            answer = http.post(
                "/dashboard/login",
                data={"csrf_token": token, "email": "lost@shop.example", "password": password},
            )
            assert answer.status_code == status
    audit = cli(server.db_url, "audit", "--json")
    assert "merchant.reset_password" in audit and "merchant.add_user" in audit


def test_a_page_that_is_not_there_is_a_page_and_the_api_keeps_its_envelope(
    server: Server,
) -> None:
    missing = httpx.get(server.base_url + "/dashboard/no-such-page")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "Page not found" in missing.text
    api = httpx.get(server.base_url + "/api/no-such-call/")
    assert api.status_code == 404 and api.json()["error_code"] == "1008"


def test_the_pages_are_usable_by_keyboard(browser: Browser, server: Server) -> None:
    created = cli_json(server.db_url, "merchant", "create", "Keys")
    user = cli_json(
        server.db_url, "merchant", "add-user", str(created["merchant_id"]), "keys@shop.example"
    )
    tab = new_tab(browser, server)
    first_sign_in(tab, "dashboard", "keys@shop.example", str(user["password"]))
    page = tab.page

    def focused() -> str:
        text: str = page.evaluate("() => document.activeElement.textContent.trim()")
        return text

    # The first stop skips the menu.
    page.keyboard.press("Tab")
    assert focused() == "Skip to content"
    # Each menu entry is reached with Tab and followed with Enter.
    for _ in range(20):
        page.keyboard.press("Tab")
        if focused() == "Transactions":
            break
    assert focused() == "Transactions"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/dashboard/transactions")
    # Signing out is a button like any other.
    for _ in range(20):
        page.keyboard.press("Tab")
        if focused() == "Sign out":
            break
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/dashboard/login" in page.url
