"""webhook endpoints per environment: a callback URL and signing secrets for test and live

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 19:00:00

Each merchant's `callback_url` goes to both environments. Its `callback_secret` (until now
`whsec_` + urlsafe base64, used as an HMAC key byte for byte: the whole string, prefix
included) stays the same key: it is stored in the Standard Webhooks spelling, `whsec_` +
standard base64 of those bytes, so a receiver keeps verifying with the secret it has
(`Webhook(old_secret.encode())`) or with the new spelling. A merchant that never had a
secret gets a new one per environment (shown by `merchant rotate-secret`).
"""

from __future__ import annotations

import base64
import secrets
import time

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ENVS = ("test", "live")
PREFIX = "whsec_"


def _standard(old_secret: str | None) -> str:
    if old_secret is None:
        return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    return PREFIX + base64.b64encode(old_secret.encode()).decode()


def _old(secret: str) -> str:
    """What downgrade leaves in merchants.callback_secret: the old spelling where the key
    was one, else the Standard Webhooks spelling (the old scheme cannot use that key)."""
    key = base64.b64decode(secret.removeprefix(PREFIX), validate=True)
    try:
        text = key.decode("ascii")
    except UnicodeDecodeError:
        return secret
    return text if text.startswith(PREFIX) and len(text) <= 64 else secret


def upgrade() -> None:
    endpoints = op.create_table(
        "webhook_endpoints",
        sa.Column("merchant_id", sa.BigInteger(), nullable=False),
        sa.Column("env", sa.String(length=4), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("previous_secret", sa.String(length=100), nullable=True),
        sa.Column("previous_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("env IN ('test', 'live')", name="webhook_endpoint_env"),
        sa.CheckConstraint(
            "(previous_secret IS NULL) = (previous_until_ms IS NULL)",
            name="webhook_endpoint_previous_has_end",
        ),
        sa.PrimaryKeyConstraint("merchant_id", "env"),
    )
    merchants = op.get_bind().execute(
        sa.text("SELECT id, callback_url, callback_secret FROM merchants ORDER BY id")
    )
    now_ms = time.time_ns() // 1_000_000
    rows = [
        {
            "merchant_id": int(merchant.id),
            "env": env,
            "url": merchant.callback_url,
            "secret": _standard(merchant.callback_secret),
            "updated_ms": now_ms,
        }
        for merchant in merchants
        for env in ENVS
    ]
    if rows:
        op.bulk_insert(endpoints, rows)
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.drop_column("callback_secret")
        batch_op.drop_column("callback_url")


def downgrade() -> None:
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("callback_url", sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column("callback_secret", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    # One URL and secret per merchant again: LIVE's, else TEST's.
    endpoints = bind.execute(
        sa.text(
            "SELECT merchant_id, env, url, secret FROM webhook_endpoints ORDER BY merchant_id, env"
        )
    ).all()
    kept: dict[int, tuple[str | None, str]] = {}
    for endpoint in endpoints:
        merchant_id = int(endpoint.merchant_id)
        if merchant_id not in kept or (kept[merchant_id][0] is None and endpoint.url):
            kept[merchant_id] = (endpoint.url, endpoint.secret)
    for merchant_id, (url, secret) in kept.items():
        bind.execute(
            sa.text(
                "UPDATE merchants SET callback_url = :url, callback_secret = :secret WHERE id = :id"
            ),
            {"url": url, "secret": _old(secret), "id": merchant_id},
        )
    op.drop_table("webhook_endpoints")
