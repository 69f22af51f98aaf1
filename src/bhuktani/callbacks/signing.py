"""Callback signatures, to the Standard Webhooks specification (standardwebhooks.com):
`webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">`, signed by the `standardwebhooks` library a merchant verifies
with (docs/CALLBACKS.md). Secrets are `whsec_` + standard base64 of the key bytes."""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
SECRET_KEY_BYTES = 32
# After a rotation the previous secret signs beside the new one this long, so that a
# receiver can deploy the new secret without refusing a callback meanwhile.
ROTATION_OVERLAP_MS = 24 * 3600 * 1000


class BadSecret(ValueError):
    pass


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_KEY_BYTES)).decode()


def key_of(secret: str) -> bytes:
    """The key bytes, strictly: the library's own decoding would drop characters outside
    standard base64 (an old urlsafe secret's `-` and `_`) and sign with another key."""
    if not secret.startswith(SECRET_PREFIX):
        raise BadSecret("a signing secret starts with whsec_")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise BadSecret("a signing secret is whsec_ and standard base64") from None
    if not key:
        raise BadSecret("a signing secret has a key")
    return key


def in_force(
    secret: str, previous: str | None, previous_until_ms: int | None, now_ms: int
) -> list[str]:
    """The secrets that sign a callback sent at now_ms: the current one, and the previous
    one until its overlap ends."""
    signing = [secret]
    if previous is not None:
        assert previous_until_ms is not None, "a previous secret has an end"
        if now_ms < previous_until_ms:
            signing.append(previous)
    return signing


def headers(event_id: str, timestamp_s: int, body: bytes, signing: Sequence[str]) -> dict[str, str]:
    """The three headers; one signature per secret, space separated, as the specification
    allows, so that a receiver holding either secret verifies."""
    assert signing, "a callback is always signed"
    assert event_id and "." not in event_id, event_id
    at = datetime.fromtimestamp(timestamp_s, tz=UTC)
    signatures = " ".join(Webhook(key_of(s)).sign(event_id, at, body) for s in signing)
    return {
        ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(timestamp_s),
        SIGNATURE_HEADER: signatures,
    }
