"""A commit call: pay the ISP for a plan, in the three steps of DESIGN.md."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import structlog

from bhuktani import logs, metrics
from bhuktani.clock import now_ms
from bhuktani.domain import State
from bhuktani.errors import IspRefused, IspRefusedField, Refusal
from bhuktani.isps.base import (
    Order,
    PayResult,
    Provider,
    Refused,
    Subscriber,
    Unknown,
)
from bhuktani.merchants.service import Principal
from bhuktani.payments import policy, records, sessions
from bhuktani.payments.details import lookup_subscriber, subscriber_key
from bhuktani.runtime import Gateway
from bhuktani.services.base import CommitQuery, CommitView, ServiceGroup

log = structlog.get_logger()


async def _subscriber(
    gateway: Gateway, group: ServiceGroup, principal: Principal, query: CommitQuery
) -> tuple[str, Subscriber, int | None]:
    """The ISP, the subscriber as priced, and the session the commit spends, if any."""
    if query.session_id is not None:
        session = await sessions.load(gateway.db, principal, group.slug, query.session_id)
        policy.check_service(gateway, principal, group.slug, session.isp)
        return session.isp, session.subscriber, session.id
    assert query.isp is not None and query.username is not None
    policy.check_service(gateway, principal, group.slug, query.isp)
    provider = policy.provider(gateway, principal.env, group.slug)
    # A slow ISP should cost one round trip per payment, not two: a subscriber seen
    # moments ago prices the commit, and the ISP still refuses a wrong amount (1011).
    key = subscriber_key(principal, query.isp, query.username)
    isp, username = query.isp, query.username

    def look_up() -> Awaitable[Subscriber]:
        return lookup_subscriber(gateway, provider, principal, isp, username)

    recent = gateway.subscribers.get(key)
    if recent is not None:
        if gateway.subscribers.refresh_due(key):
            # Asked again before the answer expires, in the background: an expiry would
            # otherwise hold every commit for this subscriber one ISP round trip.
            gateway.lookups.start(key, look_up)
        return isp, recent, None
    return isp, await gateway.lookups.run(key, look_up), None


async def _pay(provider: Provider, order: Order, timeout_s: float) -> PayResult:
    """The ISP call. Whatever goes wrong here leaves the outcome unknown, never failed."""
    try:
        async with asyncio.timeout(timeout_s):
            return await provider.pay(order)
    except TimeoutError:
        return Unknown("no answer from the ISP in time")
    except Exception as exc:  # an adapter bug must not lose a held payment
        log.exception("isp_pay_crashed", payment_id=order.payment_id)
        return Unknown(f"adapter error: {type(exc).__name__}")


def _refusal_error(refusal: Refused) -> Refusal:
    if refusal.field:
        return IspRefusedField(
            f"{refusal.field}: {refusal.reason}", error_data={refusal.field: [refusal.reason]}
        )
    return IspRefused(refusal.reason)


async def commit(
    gateway: Gateway, group: ServiceGroup, data: dict[str, Any], token: str | None, client: str
) -> dict[str, Any]:
    settings = gateway.settings
    principal = await policy.caller(gateway, token, client)
    logs.bind(merchant_id=principal.merchant_id, env=principal.env)
    query = group.parse_commit(data)
    logs.bind(reference=query.reference)
    try:
        isp, subscriber, session_id = await _subscriber(gateway, group, principal, query)
        package, duration = group.choose(subscriber, query)
        provider = policy.provider(gateway, principal.env, group.slug)
        policy.check_upstream(gateway, principal.env, isp)
    except Refusal:
        # A retried commit learns the first one's outcome (1013) before any other answer:
        # its session is spent by then, the ISP may be down, the price may have moved. On
        # the way to a payment this costs nothing: the hold refuses a used reference in
        # its own transaction.
        await records.refuse_duplicate(gateway.db, principal, query.reference)
        raise
    order = Order(
        payment_id=sessions.random_id(),
        merchant_id=principal.merchant_id,
        isp=isp,
        username=subscriber.username,
        package_code=query.package_code,
        package_title=package.title,
        duration_code=duration.code,
        days=duration.days,
        amount_paisa=duration.amount_paisa,
    )
    # Held with the amount; cached, so a merchant without charges pays no query for it.
    charge_paisa = await gateway.charges.charge_paisa(
        gateway.db, principal, group.slug, isp, order.amount_paisa
    )
    # Until step 3 has run, the reconciler leaves the payment to this request.
    grace_ms = int((settings.isp_timeout_s * 2 + 5) * 1000)
    await records.open_payment(
        gateway.book,
        principal,
        group.slug,
        order,
        query.reference,
        session_id,
        first_check_ms=now_ms() + grace_ms,
        charge_paisa=charge_paisa,
    )
    logs.bind(payment_id=order.payment_id)
    started = time.perf_counter()
    result = await _pay(provider, order, settings.isp_timeout_s + 1)
    isp_ms = round((time.perf_counter() - started) * 1000, 2)
    policy.record_upstream(gateway, principal.env, isp, ok=not isinstance(result, Unknown))
    # Told on the request's own log line, not on one of its own: one line per request.
    # isp_ms beside duration_ms says how much of the request the ISP took.
    logs.bind(isp=isp, isp_outcome=type(result).__name__, isp_ms=isp_ms)
    first_check_ms = now_ms() + int(settings.reconcile_backoff_s[0] * 1000)
    settled = await records.settle(
        gateway.book,
        order.payment_id,
        result,
        next_check_ms=first_check_ms,
        charged=charge_paisa > 0,
    )
    metrics.payment_answers(principal.env, group.slug, settled.state).inc()
    if settled.state == State.FAILED:
        raise _refusal_error(settled.refusal or Refused(settled.detail))
    return group.render_commit(
        CommitView(
            state=settled.state,
            payment_id=settled.payment_id,
            receipt=settled.detail,
            amount_paisa=settled.amount_paisa,
            available_paisa=settled.available_paisa,
            charge_paisa=charge_paisa,
        )
    )
