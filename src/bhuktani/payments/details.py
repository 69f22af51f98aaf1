"""A details call: who is the subscriber and what can be paid (one flow per API call)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from bhuktani import logs
from bhuktani.errors import CannotFulfil, ServiceUnavailable
from bhuktani.isps.base import Lookup, Provider, ProviderUnavailable, Subscriber, username_key
from bhuktani.merchants.service import Principal
from bhuktani.payments import policy, sessions
from bhuktani.runtime import Gateway
from bhuktani.services.base import DetailsQuery, ServiceGroup
from bhuktani.store import Tx

log = structlog.get_logger()


async def lookup_subscriber(
    gateway: Gateway, provider: Provider, principal: Principal, isp: str, username: str
) -> Subscriber:
    policy.check_upstream(gateway, principal.env, isp)
    try:
        subscriber = await provider.lookup(Lookup(isp, username, principal.merchant_id))
    except ProviderUnavailable as exc:
        policy.record_upstream(gateway, principal.env, isp, ok=False)
        log.warning("isp_lookup_failed", isp=isp, reason=str(exc))
        raise ServiceUnavailable("The ISP did not answer the look-up; try again") from None
    policy.record_upstream(gateway, principal.env, isp, ok=True)
    return _found(gateway, principal, isp, username, subscriber)


def subscriber_key(principal: Principal, isp: str, username: str) -> tuple[str, int, str, str]:
    """The key of gateway.subscribers and gateway.lookups."""
    return (principal.env, principal.merchant_id, isp, username_key(username))


def _found(
    gateway: Gateway, principal: Principal, isp: str, username: str, subscriber: Subscriber | None
) -> Subscriber:
    if subscriber is None:
        raise CannotFulfil("Username not found")
    gateway.subscribers.put(subscriber_key(principal, isp, username), subscriber)
    return subscriber


async def _offer_in_one_transaction(
    gateway: Gateway,
    lookup_in: Callable[[Tx, Lookup], Awaitable[Subscriber | None]],
    principal: Principal,
    service: str,
    query: DetailsQuery,
) -> tuple[Subscriber, int]:
    """The look-up and the session in one transaction: one trip to the database where
    its transactions run whole (see Database.whole_transactions)."""
    lookup = Lookup(query.isp, query.username, principal.merchant_id)
    ttl_s = gateway.settings.session_ttl_s

    async def body(tx: Tx) -> tuple[Subscriber | None, int | None]:
        subscriber = await lookup_in(tx, lookup)
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
    principal = await policy.caller(gateway, token, client)
    logs.bind(merchant_id=principal.merchant_id, env=principal.env)
    query = group.parse_details(data)
    if query.reference:
        logs.bind(reference=query.reference)
    policy.check_service(gateway, principal, group.slug, query.isp)
    provider = policy.provider(gateway, principal.env, group.slug)
    # Where each statement is a round trip, a look-up and an insert each committed alone
    # take two, where one transaction takes four (BEGIN, look-up, insert, COMMIT).
    if group.uses_sessions and provider.lookup_in is not None and gateway.db.whole_transactions:
        offered, opened = await _offer_in_one_transaction(
            gateway, provider.lookup_in, principal, group.slug, query
        )
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
