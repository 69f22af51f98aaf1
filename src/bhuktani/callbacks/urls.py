"""Where callbacks may go. LIVE callbacks must reach the public internet: never loopback,
private, link-local, metadata or other reserved ranges, checked on the addresses the name
resolves to at send time and pinned for the connection (so DNS can't be switched between
the check and the request). TEST callbacks may go anywhere, for local integration."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_CHARS = 2000


class UnsafeUrl(Exception):
    pass


def check_syntax(url: str) -> None:
    if len(url) > MAX_URL_CHARS:
        raise UnsafeUrl("callback URL is too long")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("callback URL must be http or https")
    if not parts.hostname:
        raise UnsafeUrl("callback URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("callback URL must not carry credentials")


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def public_address(url: str) -> str:
    """The address to connect to for a LIVE callback; raises UnsafeUrl."""
    check_syntax(url)
    parts = urlsplit(url)
    host = parts.hostname
    assert host is not None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeUrl(f"callback host does not resolve ({type(exc).__name__})") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise UnsafeUrl("callback host does not resolve")
    # Every address must be public: a name with one private address is refused outright.
    if not all(is_public(a) for a in addresses):
        raise UnsafeUrl("callback host resolves to a non-public address")
    return addresses[0]
