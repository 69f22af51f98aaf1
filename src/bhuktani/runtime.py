"""The one place the system is assembled: `build` makes, once per process, everything a
flow needs (the database, the payment book, the ISPs of each environment, their breakers,
the caches and the rate limits), and `loops` the loops beside the API (reconciler,
session sweeper, the books' daily work, callback delivery). `bhuktani serve`, `bhuktani worker` and the CLI's
commands all start here."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from bhuktani.books.charges import ChargeCache
from bhuktani.domain import Env
from bhuktani.infra.ttl_cache import SingleFlight, TtlCache
from bhuktani.isps.base import Provider, Subscriber
from bhuktani.isps.breaker import Breakers
from bhuktani.ledger.book import PaymentBook, book_for
from bhuktani.merchants.service import AuthCache
from bhuktani.ratelimit import Limit, Limits
from bhuktani.sandbox.inprocess import SandboxProvider
from bhuktani.settings import Settings
from bhuktani.store import Database, connect

log = structlog.get_logger()


@dataclass
class Gateway:
    """The system as one process assembled it: what every flow and loop reads."""

    db: Database
    settings: Settings
    # The one writer of a payment's money (open hold, finalize), of this database's engine.
    book: PaymentBook
    sandbox: Provider
    live: dict[str, Provider] = field(default_factory=dict)
    # LIVE ISPs only: the sandbox never degrades.
    breakers: Breakers = field(default_factory=lambda: Breakers(5, 30.0))
    auth_cache: AuthCache | None = None
    # None: no request rate limits (build() always sets them).
    limits: Limits | None = None
    # Subscribers as their ISP last showed them: (env, merchant, isp, username).
    subscribers: TtlCache[tuple[str, int, str, str], Subscriber] = field(
        default_factory=lambda: TtlCache(0)
    )
    # The look-ups of session-less commits in flight, by the same key.
    lookups: SingleFlight[tuple[str, int, str, str], Subscriber] = field(
        default_factory=SingleFlight
    )
    # Each merchant's service charges, which every commit prices (books/charges.py).
    charges: ChargeCache = field(default_factory=lambda: ChargeCache(0))

    @property
    def token_key(self) -> bytes:
        return self.settings.token_hash_key.get_secret_value().encode()

    def provider_of(self, env: str, group: str) -> Provider | None:
        """The ISPs of a service group in an environment: the sandbox for TEST, the
        configured ISP system for LIVE, None where none is configured."""
        return self.sandbox if env == Env.TEST else self.live.get(group)

    def isp_waiting(self) -> dict[str, int]:
        """LIVE calls waiting for a connection to their ISP now, by service group."""
        return {group: provider.waiting for group, provider in self.live.items()}

    async def aclose(self) -> None:
        for provider in self.live.values():
            await provider.aclose()
        await self.db.close()


def live_providers(settings: Settings) -> dict[str, Provider]:
    """A provider for each service group whose ISP system is configured
    (BHUKTANI_ISPS__<GROUP>__BASE_URL); a group without one answers LIVE tokens 1018."""
    configured = settings.isp_endpoints()
    if not configured:
        return {}
    from bhuktani.isps.adapter import IspHttpProvider

    return {
        group: IspHttpProvider(
            group=group,
            base_url=endpoint.base_url,
            api_key=endpoint.api_key.get_secret_value(),
            connect_timeout_s=settings.isp_connect_timeout_s,
            timeout_s=settings.isp_timeout_s,
            max_connections=settings.isp_max_connections,
            settle_window_s=settings.isp_settle_window_s,
        )
        for group, endpoint in configured.items()
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
        book=book_for(db),
        sandbox=sandbox,
        live=live_providers(settings),
        breakers=Breakers(settings.isp_breaker_failures, settings.isp_breaker_cooldown_s),
        auth_cache=AuthCache(settings.auth_cache_s),
        # A charge set or cleared takes effect within the same time as a revoked token.
        charges=ChargeCache(settings.auth_cache_s),
        limits=Limits(
            db,
            merchant_default=Limit(settings.rate_per_s, settings.rate_burst),
            auth_failures=Limit(settings.auth_fail_per_s, settings.auth_fail_burst),
        ),
        # The last third of an answer's life is spent refreshing it.
        subscribers=TtlCache(
            settings.isp_lookup_cache_s, refresh_ahead_s=settings.isp_lookup_cache_s / 3
        ),
    )


async def start(settings: Settings, *, announce: bool = True) -> Gateway:
    """The system on the database of the settings, for one process. `announce` logs what
    the operator should change (the CLI's output stays its own)."""
    legacy = settings.legacy_isp_names()
    if announce and legacy:
        log.warning("deprecated_settings", names=legacy, use="BHUKTANI_ISPS__<GROUP>__...")
    db = await connect(settings.database_url, pool_size=settings.db_pool_size)
    return build(db, settings)


def loops(
    gateway: Gateway, stop: asyncio.Event, *, reconciler: bool, callbacks: bool
) -> list[Coroutine[Any, Any, None]]:
    """The loops that run beside the API until `stop` is set: the reconciler and the
    session sweeper, and the callback deliverer."""
    # Imported here: the loops' modules take the Gateway from this one.
    from bhuktani.books import alerts, settlement, statements
    from bhuktani.callbacks import delivery
    from bhuktani.payments import reconcile, sweeper

    # Every process that serves /metrics shows the last settlement with each ISP.
    found: list[Coroutine[Any, Any, None]] = [settlement.watch(gateway.db, stop)]
    if reconciler:
        found += [
            reconcile.run(gateway, stop),
            sweeper.run(gateway, stop),
            # The books: days closed, low balances told, each ISP settled each morning.
            statements.run(gateway, stop),
            alerts.run(gateway, stop),
            settlement.run(gateway, stop),
        ]
    if callbacks:
        found.append(delivery.run(gateway, stop))
    return found
