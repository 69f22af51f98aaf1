"""Delivers the callback outbox, DLRs and events alike: at least once, signed, each attempt
recorded, retried on a bounded schedule until the merchant answers 2xx or the schedule
ends.

Each attempt is a task of its own with one deadline for the whole exchange (resolve,
connect, send, read the status line and at most MAX_ANSWER_BYTES of the body, close), so
a receiver that drips its answer costs its own endpoint one timeout and nothing more.
Sends are bounded per endpoint (merchant and environment) and per process; a claim takes
only what can start at once, so no callback waits, leased, behind a slow one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog

from bhuktani import metrics
from bhuktani.callbacks import multipart, outbox, signing, urls
from bhuktani.clock import now_ms
from bhuktani.domain import Env
from bhuktani.settings import Settings
from bhuktani.store import Database


class Gateway(Protocol):
    """What delivery needs of the running system (runtime.Gateway has it)."""

    db: Database
    settings: Settings


log = structlog.get_logger()

# Of a receiver's answer only the status matters; the body is read this far (so that a
# short one leaves the connection reusable) and then the connection is closed. One more
# socket read (64 KiB in httpcore) may be in memory when the limit is reached.
MAX_ANSWER_BYTES = 64 * 1024
# A lease outlasts its attempt's deadline by at least this, for the attempt's record to be
# written (SQLite queues it behind the payments' writes): a callback being sent is never
# claimed again meanwhile.
LEASE_MARGIN_S = 30.0
NO_URL = "no callback URL"


def next_attempt_ms(schedule_s: list[float], attempts_before: int) -> int | None:
    """When to try again after this attempt, or None when the schedule is spent. One
    schedule for both environments."""
    if attempts_before >= len(schedule_s):
        return None
    return now_ms() + int(schedule_s[attempts_before] * 1000)


def lease_ms(lease_s: float, timeout_s: float) -> int:
    return int(max(lease_s, timeout_s + LEASE_MARGIN_S) * 1000)


async def _target(
    url: str, env: str, *, allow_private: bool
) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL to connect to, extra headers and request extensions. A LIVE callback
    connects to the public address it was checked on, with its own name as Host and SNI,
    and closes the connection after: httpx pools connections by the address, so another
    name on the same address (a CDN, shared hosting) would be sent over a TLS session
    whose certificate was checked for this name."""
    if env != Env.LIVE or allow_private:
        urls.check_syntax(url)
        return url, {}, {}
    address = await urls.public_address(url)
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    assert parts.hostname is not None
    return pinned, {"Host": parts.netloc, "Connection": "close"}, {"sni_hostname": parts.hostname}


def body_of(due: outbox.Due) -> tuple[bytes, str]:
    """The bytes to sign and send, and their Content-Type: a DLR is the form dlr.md shows;
    an event is its JSON as queued, which Standard Webhooks' libraries parse on verifying.
    The Content-Type tells a receiver which of the two it got; an event's `type` which
    event."""
    if due.is_event:
        return due.payload_json.encode(), "application/json"
    return multipart.encode(due.form_fields(), due.event_id.replace("-", ""))


async def _exchange(gateway: Gateway, http: httpx.AsyncClient, due: outbox.Due, url: str) -> int:
    """One POST; its status code. The caller's deadline bounds all of it."""
    settings = gateway.settings
    body, content_type = body_of(due)
    headers = {
        "Content-Type": content_type,
        "User-Agent": "bhuktani-callbacks",
        **signing.headers(due.event_id, now_ms() // 1000, body, due.signing_secrets),
    }
    target, extra_headers, extensions = await _target(
        url, due.env, allow_private=settings.callback_allow_private
    )
    request = http.build_request(
        "POST",
        target,
        content=body,
        headers={**headers, **extra_headers},
        extensions=extensions,
        timeout=settings.callback_timeout_s,
    )
    response = await http.send(request, stream=True)
    try:
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read >= MAX_ANSWER_BYTES:
                break
    finally:
        # Closes the connection unless the body was read to its end.
        await response.aclose()
    return response.status_code


async def send(gateway: Gateway, http: httpx.AsyncClient, due: outbox.Due) -> str:
    settings = gateway.settings
    started = time.perf_counter()
    http_status: int | None = None
    error: str | None = None
    try:
        if due.url is None or not due.signing_secrets:
            # The merchant unset its URL after this was queued: it waits, on the schedule,
            # for a URL to be set again (docs/CALLBACKS.md).
            error = NO_URL
        else:
            async with asyncio.timeout(settings.callback_timeout_s):
                http_status = await _exchange(gateway, http, due, due.url)
    except TimeoutError:
        error = "TimeoutError"
    except urls.UnsafeUrl as exc:
        error = f"refused: {exc}"
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    latency_ms = int((time.perf_counter() - started) * 1000)
    status = await outbox.record_attempt(
        gateway.db,
        due,
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
        event_type=due.event_type,
        merchant_id=due.merchant_id,
        env=due.env,
        http_status=http_status,
        error=error,
        latency_ms=latency_ms,
        outcome=status,
    )
    return status


class Deliverer:
    """The sends in flight in this process, as tasks, counted per endpoint."""

    def __init__(self, gateway: Gateway, http: httpx.AsyncClient) -> None:
        self.gateway = gateway
        self.http = http
        self.busy: Counter[tuple[int, str]] = Counter()
        self.tasks: set[asyncio.Task[str]] = set()
        # Set when a send ends: its slot may take a callback waiting for it.
        self.freed = asyncio.Event()
        # Due callbacks were left at the last claim for want of a slot: a send's end is
        # worth a claim. Otherwise the next poll is soon enough, and a claim per send
        # would be a write transaction per send, queued with the payments on SQLite.
        self.held_back = False

    async def claim_and_start(self) -> int:
        """Lease what can start now and start it; the number started."""
        settings = self.gateway.settings
        free = settings.callback_concurrency - len(self.tasks)
        if free <= 0:
            self.held_back = True
            return 0
        claimed = await outbox.claim_due(
            self.gateway.db,
            limit=min(settings.callback_batch, free),
            lease_ms=lease_ms(settings.callback_lease_s, settings.callback_timeout_s),
            per_endpoint=settings.callback_endpoint_concurrency,
            busy=+self.busy,
        )
        self.held_back = claimed.held_back
        for due in claimed:
            self._start(due)
        return len(claimed)

    def _start(self, due: outbox.Due) -> None:
        endpoint = due.endpoint
        self.busy[endpoint] += 1
        assert self.busy[endpoint] <= self.gateway.settings.callback_endpoint_concurrency
        task = asyncio.create_task(send(self.gateway, self.http, due))
        self.tasks.add(task)

        def done(finished: asyncio.Task[str]) -> None:
            self.tasks.discard(finished)
            self.busy[endpoint] -= 1
            if self.busy[endpoint] == 0:
                del self.busy[endpoint]
            self.freed.set()
            if not finished.cancelled() and finished.exception() is not None:
                log.error("callback_send_failed", error=repr(finished.exception()))

        task.add_done_callback(done)

    async def finish(self) -> None:
        """Wait for the sends in flight: each ends by its own deadline."""
        await asyncio.gather(*self.tasks, return_exceptions=True)


def client(max_connections: int) -> httpx.AsyncClient:
    # Redirects are never followed: a 3xx is a failed attempt, not a new destination.
    # A connection for every send in flight: none waits for the pool within its deadline.
    return httpx.AsyncClient(
        follow_redirects=False,
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=min(20, max_connections)
        ),
        trust_env=False,
    )


async def run(gateway: Gateway, stop: asyncio.Event) -> None:
    settings = gateway.settings
    async with client(settings.callback_concurrency) as http:
        deliverer = Deliverer(gateway, http)
        try:
            while not stop.is_set():
                deliverer.freed.clear()
                try:
                    started = await deliverer.claim_and_start()
                except Exception:
                    log.exception("callback_round_failed")
                    started = 0
                if started >= settings.callback_batch:
                    continue
                # Until the next poll, a send's end (its slot may serve a waiting
                # callback), or the stop.
                waits = [asyncio.ensure_future(stop.wait())]
                if deliverer.tasks and deliverer.held_back:
                    waits.append(asyncio.ensure_future(deliverer.freed.wait()))
                try:
                    await asyncio.wait(
                        waits, timeout=settings.callback_poll_s, return_when="FIRST_COMPLETED"
                    )
                finally:
                    for waiting in waits:
                        waiting.cancel()
        finally:
            with contextlib.suppress(Exception):
                await deliverer.finish()
