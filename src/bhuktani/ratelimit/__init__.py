"""Request rate limits, checked around authentication, before any flow work: a refused
request has read nothing and moved nothing (docs/OPERATING.md, "Limits").

1. The client address's failed authentications (addresses.py), before the token is hashed.
2. The token, as always; a refusal of it counts against the address.
3. The merchant's own rate in the token's environment (merchants.py), shared by every
   process through the database."""

from __future__ import annotations

import time

from bhuktani import logs
from bhuktani.errors import Refusal, TokenMissing, rate_limited
from bhuktani.merchants.service import Principal
from bhuktani.ratelimit.addresses import AddressLimiter, address_key
from bhuktani.ratelimit.bucket import Clock, Limit
from bhuktani.ratelimit.merchants import MerchantLimiter
from bhuktani.ratelimit.trips import Trips
from bhuktani.store import Database

__all__ = ["Limit", "Limits"]


class Limits:
    def __init__(
        self,
        db: Database,
        *,
        merchant_default: Limit,
        auth_failures: Limit,
        clock: Clock = time.monotonic,
    ) -> None:
        self.merchant_default = merchant_default
        self.addresses = AddressLimiter(auth_failures, clock=clock)
        self.merchants = MerchantLimiter(db, clock=clock)
        self._trips = Trips(clock=clock)

    def check_address(self, host: str) -> None:
        wait_s = self.addresses.wait_s(host)
        if wait_s > 0:
            limit = self.addresses.limit
            address = address_key(host)
            self._trips.refused(
                "auth", address, address=address, per_s=limit.per_s, burst=limit.burst
            )
            raise rate_limited(wait_s, "Too many failed authentications from this address")

    def auth_failed(self, host: str, refusal: Refusal) -> None:
        if not isinstance(refusal, TokenMissing):  # no token: nothing was hashed or looked up
            self.addresses.failed(host)

    def merchant_limit(self, principal: Principal) -> Limit:
        if principal.rate_per_s is None or principal.rate_burst is None:
            return self.merchant_default
        return Limit(principal.rate_per_s, principal.rate_burst)

    async def admit(self, principal: Principal) -> None:
        limit = self.merchant_limit(principal)
        key = (principal.merchant_id, principal.env)
        wait_s = await self.merchants.admit(key, limit)
        if wait_s > 0:
            # The refused request's own line names whose limit it was.
            logs.bind(merchant_id=principal.merchant_id, env=principal.env)
            self._trips.refused(
                "merchant",
                key,
                merchant_id=principal.merchant_id,
                env=principal.env,
                per_s=limit.per_s,
                burst=limit.burst,
            )
            raise rate_limited(
                wait_s, f"Over {limit.per_s:g} requests a second (burst {limit.burst})"
            )
