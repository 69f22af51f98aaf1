"""The rules every flow applies before it moves money: who is calling (within the rate
limits), whether the merchant may use the service now, which ISPs answer for it, and
whether an ISP is degraded (its breaker)."""

from __future__ import annotations

from bhuktani.domain import Env
from bhuktani.errors import InMaintenance, Refusal, ServiceNotEnabled, ServiceUnavailable
from bhuktani.isps.base import Provider
from bhuktani.isps.breaker import Breaker
from bhuktani.merchants.service import Principal, authenticate
from bhuktani.runtime import Gateway


async def caller(gateway: Gateway, token: str | None, client: str) -> Principal:
    """The token's principal, within the rate limits: 1022 before anything else."""
    key = gateway.token_key
    if gateway.limits is None:
        return await authenticate(gateway.db, token, key=key, cache=gateway.auth_cache)
    gateway.limits.check_address(client)
    try:
        principal = await authenticate(gateway.db, token, key=key, cache=gateway.auth_cache)
    except Refusal as refusal:
        gateway.limits.auth_failed(client, refusal)
        raise
    await gateway.limits.admit(principal)
    return principal


def provider(gateway: Gateway, env: str, group: str) -> Provider:
    found = gateway.provider_of(env, group)
    if found is None:
        raise ServiceUnavailable(f"The {group} service is not available for LIVE tokens yet")
    return found


def breaker(gateway: Gateway, env: str, isp: str) -> Breaker | None:
    # LIVE ISPs only: the sandbox never degrades.
    return gateway.breakers.of(isp) if env == Env.LIVE else None


def check_upstream(gateway: Gateway, env: str, isp: str) -> None:
    """Fail fast, before any money is held, while the ISP is degraded."""
    found = breaker(gateway, env, isp)
    if found is not None and not found.allow():
        raise ServiceUnavailable(f"The ISP {isp!r} is not answering; try again later")


def record_upstream(gateway: Gateway, env: str, isp: str, *, ok: bool) -> None:
    found = breaker(gateway, env, isp)
    if found is None:
        return
    if ok:
        found.succeeded()
    else:
        found.failed()


def check_service(gateway: Gateway, principal: Principal, group: str, isp: str) -> None:
    if not principal.may_use(group, isp):
        raise ServiceNotEnabled(f"The service {isp!r} is not enabled for this account")
    maintenance = gateway.settings.maintenance
    if group in maintenance or isp in maintenance:
        raise InMaintenance(f"The service {isp!r} is in maintenance; try again later")
