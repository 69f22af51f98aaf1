"""Everything a flow needs, built once per process: the database, the service groups and
the providers of each environment."""

from __future__ import annotations

from dataclasses import dataclass, field

from bhuktani.errors import ApiError
from bhuktani.merchants.service import AuthCache, Principal, authenticate
from bhuktani.providers.arrownet.schema import Arrownet
from bhuktani.providers.base import Provider, Subscriber
from bhuktani.providers.breaker import Breaker, Breakers
from bhuktani.providers.group import ServiceGroup
from bhuktani.providers.hashcnet_v2.schema import HashcnetV2
from bhuktani.sandbox.inprocess import SandboxProvider
from bhuktani.settings import Settings
from bhuktani.store import Database
from bhuktani.ttl_cache import SingleFlight, TtlCache

GROUPS: dict[str, ServiceGroup] = {group.slug: group for group in (HashcnetV2(), Arrownet())}


@dataclass
class Gateway:
    db: Database
    settings: Settings
    sandbox: Provider
    live: dict[str, Provider] = field(default_factory=dict)
    # LIVE ISPs only: the sandbox never degrades.
    breakers: Breakers = field(default_factory=lambda: Breakers(5, 30.0))
    auth_cache: AuthCache | None = None
    # Subscribers as their ISP last showed them: (env, merchant, isp, username).
    subscribers: TtlCache[tuple[str, int, str, str], Subscriber] = field(
        default_factory=lambda: TtlCache(0)
    )
    # The look-ups of session-less commits in flight, by the same key.
    lookups: SingleFlight[tuple[str, int, str, str], Subscriber] = field(
        default_factory=SingleFlight
    )

    @property
    def token_key(self) -> bytes:
        return self.settings.token_hash_key.get_secret_value().encode()

    def provider(self, env: str, group: str) -> Provider:
        if env == "test":
            return self.sandbox
        provider = self.live.get(group)
        if provider is None:
            raise ApiError("1018", f"The {group} service is not available for LIVE tokens yet")
        return provider

    async def authenticate(self, token: str | None) -> Principal:
        return await authenticate(self.db, token, key=self.token_key, cache=self.auth_cache)

    def breaker(self, env: str, isp: str) -> Breaker | None:
        return self.breakers.of(isp) if env == "live" else None

    def check_upstream(self, env: str, isp: str) -> None:
        """Fail fast, before any money is held, while the ISP is degraded."""
        breaker = self.breaker(env, isp)
        if breaker is not None and not breaker.allow():
            raise ApiError("1018", f"The ISP {isp!r} is not answering; try again later")

    def record_upstream(self, env: str, isp: str, *, ok: bool) -> None:
        breaker = self.breaker(env, isp)
        if breaker is None:
            return
        if ok:
            breaker.succeeded()
        else:
            breaker.failed()

    def check_service(self, principal: Principal, group: str, isp: str) -> None:
        if not principal.may_use(group, isp):
            raise ApiError("1008", f"The service {isp!r} is not enabled for this account")
        if group in self.settings.maintenance or isp in self.settings.maintenance:
            raise ApiError("1019", f"The service {isp!r} is in maintenance; try again later")

    def isp_waiting(self) -> dict[str, int]:
        """LIVE calls waiting for a connection to their ISP now, by service group."""
        waiting = {
            group: getattr(provider, "waiting", None) for group, provider in self.live.items()
        }
        return {group: count for group, count in waiting.items() if isinstance(count, int)}

    async def aclose(self) -> None:
        for provider in self.live.values():
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()
        await self.db.close()


def live_providers(settings: Settings) -> dict[str, Provider]:
    configured = {
        "hashcnet-v2": (settings.hashcnet_v2_base_url, settings.hashcnet_v2_api_key),
        "arrownet": (settings.arrownet_base_url, settings.arrownet_api_key),
    }
    if not any(base_url for base_url, _ in configured.values()):
        return {}
    from bhuktani.providers.isp_http import IspHttpProvider

    return {
        group: IspHttpProvider(
            group=group,
            base_url=base_url,
            api_key=api_key.get_secret_value(),
            connect_timeout_s=settings.isp_connect_timeout_s,
            timeout_s=settings.isp_timeout_s,
            max_connections=settings.isp_max_connections,
            settle_window_s=settings.isp_settle_window_s,
        )
        for group, (base_url, api_key) in configured.items()
        if base_url
    }


def build(db: Database, settings: Settings) -> Gateway:
    sandbox = SandboxProvider(
        db,
        slow_delay_s=settings.sandbox_slow_delay_s,
        settle_window_s=settings.sandbox_settle_window_s,
    )
    return Gateway(
        db=db,
        settings=settings,
        sandbox=sandbox,
        live=live_providers(settings),
        breakers=Breakers(settings.isp_breaker_failures, settings.isp_breaker_cooldown_s),
        auth_cache=AuthCache(settings.auth_cache_s),
        # The last third of an answer's life is spent refreshing it.
        subscribers=TtlCache(
            settings.isp_lookup_cache_s, refresh_ahead_s=settings.isp_lookup_cache_s / 3
        ),
    )
