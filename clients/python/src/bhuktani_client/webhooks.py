"""Verifying a callback (a payment's delivery report or an event) as Standard Webhooks
signs it: `webhook-signature` holds one or more `v1,<base64 HMAC-SHA256>` of
"<webhook-id>.<webhook-timestamp>.<raw body>", keyed by the secret's bytes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from bhuktani_client.errors import InvalidCallback, InvalidSignature
from bhuktani_client.models import Callback

SECRET_PREFIX = "whsec_"
# A callback signed further from now than this is refused: a captured one cannot be
# replayed later (the Standard Webhooks libraries' tolerance).
TOLERANCE_S = 5 * 60


def secret_key(secret: str | bytes) -> bytes:
    """The HMAC key of a secret: `whsec_` + standard base64 of the key, as `merchant
    create` and `rotate-secret` show it; or the key's own bytes (a secret from before
    Standard Webhooks, passed as bytes)."""
    if isinstance(secret, bytes):
        return secret
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a callback secret starts with whsec_ (pass an older one as bytes)")
    try:
        return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError("the secret after whsec_ is not base64") from exc


def sign(secret: str | bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of a callback."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise InvalidSignature(f"no {name} header")


def _verified(
    secret: str | bytes, body: bytes, headers: Mapping[str, str], now_s: float
) -> tuple[str, int]:
    webhook_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    if not stamp.isascii() or not stamp.isdigit():
        raise InvalidSignature("webhook-timestamp is not Unix seconds")
    timestamp = int(stamp)
    if abs(now_s - timestamp) > TOLERANCE_S:
        raise InvalidSignature("webhook-timestamp is more than 5 minutes from now")
    expected = sign(secret, webhook_id, timestamp, body).encode()
    # Every signature is compared, in constant time; one match is enough (two are sent
    # for a day after the secret is rotated).
    matched = False
    for given in _header(headers, "webhook-signature").split():
        matched |= hmac.compare_digest(expected, given.encode())
    if not matched:
        raise InvalidSignature("no signature matches the secret")
    return webhook_id, timestamp


def _form(content_type: str, body: bytes) -> dict[str, Any]:
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not message.is_multipart():
        raise InvalidCallback("the body is not multipart/form-data")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise InvalidCallback("a form field without a name")
        fields[name] = part.get_payload(decode=True).decode()  # type: ignore[union-attr]
    return fields


def verify_callback(
    secret: str | bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now_s: float | None = None,
) -> Callback:
    """The callback, once its signature and timestamp verify; else InvalidSignature.
    Pass the raw body, before any parsing, and the request's headers."""
    webhook_id, timestamp = _verified(
        secret, body, headers, time.time() if now_s is None else now_s
    )
    content_type = _header(headers, "content-type")
    if content_type.lower().startswith("multipart/form-data"):
        return Callback(webhook_id, timestamp, "dlr", _form(content_type, body), body)
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise InvalidCallback("the body is neither a form nor JSON") from exc
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise InvalidCallback("an event is a JSON object with a type")
    data = event.get("data")
    return Callback(
        webhook_id, timestamp, event["type"], data if isinstance(data, dict) else {}, body
    )
