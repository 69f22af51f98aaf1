"""What the pages' tests share: Debian's Chromium driven by Playwright, users made by the
CLI as an operator makes them, signing in, and the checks every page gets (nothing from
another host, a label on every field)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Page, Request, sync_playwright

from tests.support import Server

CHROMIUM = os.environ.get("BHUKTANI_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
NEW_PASSWORD = "correct horse battery staple"
# A phone and a desktop.
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def launch() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(
            f"no Chromium at {CHROMIUM}: apt-get install chromium (or set BHUKTANI_TEST_CHROMIUM)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    """A page of one browser context, which records every request it makes."""

    page: Page
    base_url: str
    requested: list[str] = field(default_factory=list)

    def go(self, path: str) -> None:
        self.page.goto(self.base_url + path)

    def foreign_requests(self) -> list[str]:
        ours = urlsplit(self.base_url).netloc
        return [
            url
            for url in self.requested
            if urlsplit(url).scheme not in ("data", "about") and urlsplit(url).netloc != ours
        ]

    def unlabelled_fields(self) -> list[str]:
        """Every visible form field without a label (or an aria-label)."""
        found: list[str] = self.page.evaluate(
            """() => [...document.querySelectorAll(
                'input:not([type=hidden]), select, textarea')]
              .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
              .map(e => e.outerHTML)"""
        )
        return found

    def check_page(self) -> None:
        """What every page must pass: nothing loaded from another host, every field
        labelled, one h1."""
        assert self.foreign_requests() == []
        assert self.unlabelled_fields() == []
        assert self.page.locator("h1").count() == 1, self.page.content()[:500]

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def new_tab(browser: Browser, server: Server, *, viewport: dict[str, int] = DESKTOP) -> Tab:
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(15_000)
    tab = Tab(page, server.base_url)

    def record(request: Request) -> None:
        tab.requested.append(request.url)

    page.on("request", record)
    return tab


def sign_in(tab: Tab, area: str, email: str, password: str) -> None:
    """Sign in at /<area>/login with the keyboard alone, as a person would."""
    tab.go(f"/{area}/login")
    tab.page.get_by_label("Email address").fill(email)
    tab.page.keyboard.press("Tab")
    tab.page.keyboard.type(password)
    with tab.page.expect_navigation():
        tab.page.keyboard.press("Enter")


def first_sign_in(tab: Tab, area: str, email: str, one_time: str) -> None:
    """Sign in with the CLI's one-time password and choose NEW_PASSWORD."""
    sign_in(tab, area, email, one_time)
    assert tab.page.url.endswith(f"/{area}/password"), tab.page.url
    tab.page.get_by_label("Current password").fill(one_time)
    tab.page.get_by_label("New password (at least 12 characters)").fill(NEW_PASSWORD)
    tab.page.get_by_label("New password again").fill(NEW_PASSWORD)
    tab.page.get_by_role("button", name="Save the password").click()
    tab.page.wait_for_url(f"**/{area}/?changed=1")
