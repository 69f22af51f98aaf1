"""A real server in its own process and Debian's Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.web.browser import launch


@pytest.fixture(scope="module")
def browser(db_url: str) -> Iterator[Browser]:
    """Chromium, once the database is made: Playwright's sync API keeps an event loop
    running in this thread while the browser lives, so nothing after it may asyncio.run
    (the pages' tests set up through the CLI and the HTTP API, as a person would)."""
    yield from launch()
