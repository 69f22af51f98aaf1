"""Callback signatures: `X-Bhuktani-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
with the merchant's callback secret, as a merchant verifies them (README)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "X-Bhuktani-Signature"
EVENT_HEADER = "X-Bhuktani-Event-Id"
SECRET_PREFIX = "whsec_"
# A receiver should refuse signatures older than this, so a captured request can't be replayed.
TOLERANCE_S = 300


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(24)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return mac.hexdigest()


def header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(secret: str, header_value: str, body: bytes, now_s: int) -> bool:
    """What a merchant's receiver does; the tests use it as a merchant would."""
    parts = dict(p.split("=", 1) for p in header_value.split(",") if "=" in p)
    timestamp = parts.get("t", "")
    if not timestamp.isdigit() or abs(now_s - int(timestamp)) > TOLERANCE_S:
        return False
    expected = signature(secret, int(timestamp), body)
    return hmac.compare_digest(expected, parts.get("v1", ""))
