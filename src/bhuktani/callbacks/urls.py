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


# IPv6 forms that carry an IPv4 address and reach it: judged by that address, since a
# relay or translator on the way delivers to it (6to4, Teredo, NAT64 are routed; an
# IPv4-compatible or -mapped address is the IPv4 host itself on a dual stack).
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
# RFC 8215's local-use NAT64 prefix: where the IPv4 address sits depends on the local
# prefix length, so nothing can be judged from it.
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _carried_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 address carries, or None if it carries none."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        server, client = ip.teredo
        return [server, client]
    if ip in NAT64_WELL_KNOWN or ip in IPV4_COMPATIBLE:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)]
    return None


def _is_public_v4(ip: ipaddress.IPv4Address) -> bool:
    return ip.is_global and not ip.is_multicast


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv4Address):
        return _is_public_v4(ip)
    if ip in NAT64_LOCAL:
        return False
    carried = _carried_ipv4(ip)
    if carried is not None:
        return all(_is_public_v4(v4) for v4 in carried)
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
