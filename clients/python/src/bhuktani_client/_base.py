"""What Client and AsyncClient share besides the calls: their settings, the headers
every request carries, and wait()'s schedule of look-ups."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from bhuktani_client._retry import RetryPolicy

__version__ = "0.1.0"
USER_AGENT = f"bhuktani-client/{__version__}"
# A commit may wait for the ISP (the gateway answers Processing past its own ISP timeout).
DEFAULT_TIMEOUT_S = 30.0
# Pages an iterator walks at most: 10,000 pages of 500 payments.
MAX_PAGES = 10_000


@dataclass(frozen=True)
class Settings:
    base_url: str
    headers: dict[str, str]
    timeout: httpx.Timeout
    policy: RetryPolicy


def settings(
    base_url: str,
    token: str,
    *,
    timeout: float,
    retries: int,
    backoff_s: float,
    max_retry_after_s: float,
) -> Settings:
    if not token:
        raise ValueError("a token is required: TEST:... for the sandbox")
    return Settings(
        base_url=base_url.rstrip("/"),
        # The token goes in the header, never in a body that could be logged.
        headers={"Authorization": f"Token {token}", "User-Agent": USER_AGENT},
        timeout=httpx.Timeout(timeout),
        policy=RetryPolicy(
            retries=retries,
            backoff_s=backoff_s,
            max_backoff_s=max(backoff_s, 8.0),
            max_retry_after_s=max_retry_after_s,
        ),
    )


def details_reference() -> str:
    """A details call's reference when the caller gives none: it names the look-up in
    the gateway's logs and claims nothing (a payment's reference is the caller's own)."""
    return "details-" + secrets.token_hex(8)


def wait_delays(first_s: float, max_s: float, max_polls: int) -> Iterator[float]:
    """wait()'s pauses between look-ups: doubling from first_s up to max_s, max_polls of
    them at most."""
    assert first_s > 0 and max_s >= first_s and max_polls >= 1
    delay = first_s
    for _ in range(max_polls):
        yield delay
        delay = min(max_s, delay * 2)
