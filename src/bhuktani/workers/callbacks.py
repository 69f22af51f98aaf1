"""Delivers the callback outbox: at least once, signed, each attempt recorded, retried on
a bounded schedule until the merchant answers 2xx or the schedule ends."""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog

from bhuktani import metrics
from bhuktani.callbacks import multipart, outbox, signing, urls
from bhuktani.clock import now_ms
from bhuktani.payments.gateway import Gateway

log = structlog.get_logger()


def next_attempt_ms(schedule_s: list[float], attempts_before: int) -> int | None:
    """When to try again after this attempt, or None when the schedule is spent."""
    if attempts_before >= len(schedule_s):
        return None
    return now_ms() + int(schedule_s[attempts_before] * 1000)


async def _target(
    due: outbox.Due, *, allow_private: bool
) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL to connect to, extra headers and request extensions. A LIVE callback
    connects to the public address it was checked on, with its own name as Host and SNI."""
    if due.env != "live" or allow_private:
        urls.check_syntax(due.url)
        return due.url, {}, {}
    address = await urls.public_address(due.url)
    parts = urlsplit(due.url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    assert parts.hostname is not None
    return pinned, {"Host": parts.netloc}, {"sni_hostname": parts.hostname}


async def send(gateway: Gateway, http: httpx.AsyncClient, due: outbox.Due) -> str:
    settings = gateway.settings
    body, content_type = multipart.encode(due.fields, due.event_id.replace("-", ""))
    timestamp = int(time.time())
    headers = {
        "Content-Type": content_type,
        signing.EVENT_HEADER: due.event_id,
        "User-Agent": "bhuktani-callbacks",
    }
    if due.secret:
        headers[signing.SIGNATURE_HEADER] = signing.header(due.secret, timestamp, body)
    started = time.perf_counter()
    http_status: int | None = None
    error: str | None = None
    try:
        url, extra_headers, extensions = await _target(
            due, allow_private=settings.callback_allow_private
        )
        response = await http.post(
            url,
            content=body,
            headers={**headers, **extra_headers},
            extensions=extensions,
            timeout=settings.callback_timeout_s,
        )
        http_status = response.status_code
    except urls.UnsafeUrl as exc:
        error = f"refused: {exc}"
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    latency_ms = int((time.perf_counter() - started) * 1000)
    status = await outbox.record_attempt(
        gateway.db,
        due.id,
        http_status=http_status,
        latency_ms=latency_ms,
        error=error,
        next_attempt_ms=next_attempt_ms(settings.callback_backoff_s, due.attempts),
    )
    metrics.CALLBACK_ATTEMPTS.labels(outcome=status).inc()
    log.info(
        "callback_attempt",
        callback_id=due.id,
        event_id=due.event_id,
        merchant_id=due.merchant_id,
        http_status=http_status,
        error=error,
        latency_ms=latency_ms,
        outcome=status,
    )
    return status


async def run_once(gateway: Gateway, http: httpx.AsyncClient) -> int:
    settings = gateway.settings
    due = await outbox.claim_due(
        gateway.db, limit=settings.callback_batch, lease_ms=settings.callback_lease_s * 1000
    )
    if due:
        await asyncio.gather(*(send(gateway, http, d) for d in due))
    return len(due)


def client() -> httpx.AsyncClient:
    # Redirects are never followed: a 3xx is a failed attempt, not a new destination.
    return httpx.AsyncClient(
        follow_redirects=False,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        trust_env=False,
    )


async def run(gateway: Gateway, stop: asyncio.Event) -> None:
    poll_s = gateway.settings.callback_poll_s
    async with client() as http:
        while not stop.is_set():
            try:
                sent = await run_once(gateway, http)
            except Exception:
                log.exception("callback_round_failed")
                sent = 0
            if sent >= gateway.settings.callback_batch:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll_s)
