"""Failed authentications per client address.

Each address has a bucket that only failed authentications (a token presented and
refused: 1002 to 1007) drain. While it is empty, every request from the address is
refused before its token is hashed or looked up: 5,000 guesses cost 5,000 dict look-ups,
not 5,000 database queries. Good requests take nothing, so an address is let through
again as soon as one token has come back (1 s at the default rate).

The address is the socket's peer, or the client a trusted proxy names
(BHUKTANI_FORWARDED_ALLOW_IPS, docs/OPERATING.md, "Limits"). An IPv6 client is counted by its /64,
which one subscriber line usually gets whole."""

from __future__ import annotations

import ipaddress

from bhuktani.ratelimit.bucket import BucketTable, Clock, Limit

# ~250 bytes an entry: 50,000 addresses are ~12 MB at most.
MAX_ADDRESSES = 50_000


def address_key(host: str) -> str:
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host[:64]
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


class AddressLimiter:
    def __init__(self, limit: Limit, *, clock: Clock, max_addresses: int = MAX_ADDRESSES) -> None:
        self._table: BucketTable[str] = BucketTable(limit, max_entries=max_addresses, clock=clock)

    @property
    def limit(self) -> Limit:
        return self._table.limit

    def __len__(self) -> int:
        return len(self._table)

    def wait_s(self, host: str) -> float:
        """0 when the address may try a token, else the seconds until it may."""
        return self._table.wait_s(address_key(host))

    def failed(self, host: str) -> None:
        self._table.take(address_key(host))
