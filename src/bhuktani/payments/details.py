"""A details call: who is the subscriber and what can be paid (one flow per API call)."""

from __future__ import annotations

from typing import Any

import structlog

from bhuktani import logs
from bhuktani.errors import ApiError, client_error
from bhuktani.merchants.service import Principal
from bhuktani.payments import sessions
from bhuktani.payments.gateway import Gateway
from bhuktani.providers.base import Lookup, Provider, ProviderUnavailable, Subscriber
from bhuktani.providers.group import DetailsQuery, ServiceGroup
from bhuktani.sandbox.catalog import normalise
from bhuktani.sandbox.inprocess import SandboxProvider
from bhuktani.store import Tx

log = structlog.get_logger()


async def lookup_subscriber(
    gateway: Gateway, provider: Provider, principal: Principal, isp: str, username: str
) -> Subscriber:
    gateway.check_upstream(principal.env, isp)
    try:
        subscriber = await provider.lookup(Lookup(isp, username, principal.merchant_id))
    except ProviderUnavailable as exc:
        gateway.record_upstream(principal.env, isp, ok=False)
        log.warning("isp_lookup_failed", isp=isp, reason=str(exc))
        raise ApiError("1018", "The ISP did not answer the look-up; try again") from None
    gateway.record_upstream(principal.env, isp, ok=True)
    return _found(gateway, principal, isp, username, subscriber)


def subscriber_key(principal: Principal, isp: str, username: str) -> tuple[str, int, str, str]:
    """The key of gateway.subscribers and gateway.lookups."""
    return (principal.env, principal.merchant_id, isp, normalise(username))


def _found(
    gateway: Gateway, principal: Principal, isp: str, username: str, subscriber: Subscriber | None
) -> Subscriber:
    if subscriber is None:
        raise client_error("Username not found")
    gateway.subscribers.put(subscriber_key(principal, isp, username), subscriber)
    return subscriber


async def _sandbox_offer(
    gateway: Gateway,
    sandbox: SandboxProvider,
    principal: Principal,
    service: str,
    query: DetailsQuery,
) -> tuple[Subscriber, int]:
    """The sandbox keeps its subscribers in our database: on SQLite its look-up and the
    session are one transaction, one trip to the SQLite thread instead of two."""
    lookup = Lookup(query.isp, query.username, principal.merchant_id)
    ttl_s = gateway.settings.session_ttl_s

    async def body(tx: Tx) -> tuple[Subscriber | None, int | None]:
        subscriber = await sandbox.lookup_in(tx, lookup)
        if subscriber is None:
            return None, None
        session_id = await sessions.insert(
            tx,
            sessions.NewSession(principal, service, query.isp, subscriber, query.reference, ttl_s),
        )
        return subscriber, session_id

    subscriber, session_id = await sessions.fresh_id(lambda: gateway.db.run(body))
    found = _found(gateway, principal, query.isp, query.username, subscriber)
    assert session_id is not None
    return found, session_id


async def details(
    gateway: Gateway, group: ServiceGroup, data: dict[str, Any], token: str | None, client: str
) -> dict[str, Any]:
    principal = await gateway.authenticate(token, client)
    logs.bind(merchant_id=principal.merchant_id, env=principal.env)
    query = group.parse_details(data)
    if query.reference:
        logs.bind(reference=query.reference)
    gateway.check_service(principal, group.slug, query.isp)
    provider = gateway.provider(principal.env, group.slug)
    # On PostgreSQL the generic path is the shorter: a look-up and an insert, each one
    # round trip, where one transaction takes four (BEGIN, look-up, insert, COMMIT).
    if (
        group.uses_sessions
        and isinstance(provider, SandboxProvider)
        and gateway.db.dialect == "sqlite"
    ):
        offered, opened = await _sandbox_offer(gateway, provider, principal, group.slug, query)
        return group.render_details(offered, opened)
    subscriber = await lookup_subscriber(gateway, provider, principal, query.isp, query.username)
    session_id = None
    if group.uses_sessions:
        new = sessions.NewSession(
            principal,
            group.slug,
            query.isp,
            subscriber,
            query.reference,
            gateway.settings.session_ttl_s,
        )
        session_id = await sessions.open_session(gateway.db, new)
    return group.render_details(subscriber, session_id)
