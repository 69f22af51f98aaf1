"""`/docs` (Swagger UI) and `/redoc` (ReDoc) work with no network but ours: every script,
style and icon they load is served by the gateway, from its own paths, and nothing in
the pages or their configuration names another host. In Chromium, with every request to
another host refused, both pages render the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route

from bhuktani.api import docs
from tests.support import Server, running_server
from tests.web.browser import DESKTOP, SCREENSHOTS, launch

PAGES = ("/docs", "/redoc")
URL_IN_CSS = re.compile(r"url\(\s*['\"]?([^'\")]+)")
# A URL a script would load, written in our configuration: any scheme and host.
URL_IN_JS = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"'`]+", re.IGNORECASE)


class References(HTMLParser):
    """Every src and href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [
            value for name, value in attrs if name in ("src", "href", "spec-url") and value
        ]


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.found + URL_IN_CSS.findall(html)


def foreign(base_url: str, urls: list[str]) -> list[str]:
    ours = urlsplit(base_url).netloc
    return [
        u
        for u in urls
        if urlsplit(urljoin(base_url, u)).scheme != "data"
        and urlsplit(urljoin(base_url, u)).netloc != ours
    ]


@pytest.fixture(scope="module")
def docs_server(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(db_url, tmp_path_factory.mktemp("docs") / "server.log") as server:
        yield server


def test_the_pages_and_their_assets_are_all_ours(docs_server: Server) -> None:
    base = docs_server.base_url
    loaded: set[str] = set()
    for page in PAGES:
        answer = httpx.get(base + page, timeout=10)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/html")
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "default-src 'none'" in policy
        found = references(answer.text)
        assert found, page
        assert foreign(base, found) == [], page
        for url in found:
            asset = httpx.get(urljoin(base + page, url), timeout=10)
            assert asset.status_code == 200, url
            loaded.add(urlsplit(urljoin(base + page, url)).path)
            if asset.headers["content-type"].startswith("text/css"):
                assert foreign(base, URL_IN_CSS.findall(asset.text)) == [], url
    # Swagger UI's configuration names no host: its document is ours, it has no validator.
    config = httpx.get(f"{base}{docs.ASSETS_URL}/swagger-init.js", timeout=10).text
    assert URL_IN_JS.findall(config) == []
    assert 'url: "/openapi.json"' in config and "validatorUrl: null" in config
    assert {f"{docs.ASSETS_URL}/{name}" for name in docs.ASSET_NAMES} <= loaded
    assert "/static/favicon.svg" in loaded


def test_the_assets_are_kept_by_browsers_and_the_api_never(docs_server: Server) -> None:
    base = docs_server.base_url
    for name in docs.ASSET_NAMES:
        answer = httpx.get(f"{base}{docs.ASSETS_URL}/{name}", timeout=10)
        assert answer.headers.get_list("cache-control") == ["public, max-age=86400"], name
        assert answer.headers["x-content-type-options"] == "nosniff"
    for path in ("/docs", "/openapi.json", "/api/balance/"):
        answer = httpx.get(base + path, timeout=10)
        assert answer.headers.get_list("cache-control") == ["no-store"], path


def test_an_unknown_asset_is_not_found(docs_server: Server) -> None:
    answer = httpx.get(f"{docs_server.base_url}{docs.ASSETS_URL}/../app.py", timeout=10)
    assert answer.status_code == 404
    answer = httpx.get(f"{docs_server.base_url}{docs.ASSETS_URL}/core.py", timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error_code"] == "1008"


def test_the_dashboard_keeps_its_own_policy(docs_server: Server) -> None:
    answer = httpx.get(f"{docs_server.base_url}/dashboard/login", timeout=10)
    policy = answer.headers["content-security-policy"]
    assert "unsafe-inline" not in policy and "blob:" not in policy


@pytest.fixture(scope="module")
def browser(docs_server: Server) -> Iterator[Browser]:
    yield from launch()


def offline_page(browser: Browser, server: Server) -> tuple[Page, list[str], list[str]]:
    """A page that can reach the server alone: (page, the requests refused, the errors
    the page logged, CSP violations included)."""
    context = browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(20_000)
    refused: list[str] = []
    errors: list[str] = []
    ours = urlsplit(server.base_url).netloc

    def only_ours(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).netloc == ours:
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    def logged(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    context.route("**/*", only_ours)
    page.on("console", logged)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page, refused, errors


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


def test_swagger_ui_renders_every_operation_offline(browser: Browser, docs_server: Server) -> None:
    document = httpx.get(f"{docs_server.base_url}/openapi.json", timeout=10).json()
    count = sum(len(item) for item in document["paths"].values())
    page, refused, errors = offline_page(browser, docs_server)
    page.goto(docs_server.base_url + "/docs")
    page.locator(".opblock").nth(count - 1).wait_for()
    assert page.locator(".opblock").count() == count
    assert page.get_by_text("getPaymentStatus").count() >= 1
    assert page.locator(".info .title").inner_text().startswith("bhuktani")
    shot(page, "api-docs")
    assert refused == []
    assert errors == []


# ReDoc's sidebar footer ("API docs by Redocly") always shows the vendor's logo from its
# CDN; no option turns it off. The pages' policy stops it before any request is made, and
# the browser says so: that one message is expected, no other.
REDOC_LOGO_BLOCKED = "Loading the image 'https://cdn.redoc.ly/redoc/logo-mini.svg' violates"


def test_redoc_renders_the_title_offline(browser: Browser, docs_server: Server) -> None:
    page, refused, errors = offline_page(browser, docs_server)
    page.goto(docs_server.base_url + "/redoc")
    title = page.locator("h1").first
    title.wait_for()
    assert title.inner_text().startswith("bhuktani")
    # Each operation is a section of its own, under its summary.
    page.locator("h2").filter(has_text="A payment's state").first.wait_for()
    shot(page, "api-redoc")
    assert refused == []
    assert [e for e in errors if not e.startswith(REDOC_LOGO_BLOCKED)] == []
