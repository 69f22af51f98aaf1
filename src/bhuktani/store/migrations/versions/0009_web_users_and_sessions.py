"""the dashboard and the operator console: their users, sessions and failed sign-ins

Cost at deploy: three new, empty tables; nothing existing is rewritten.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "web_users",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("merchant_id", sa.BigInteger()),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("must_change", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("password_changed_ms", sa.BigInteger()),
        sa.Column("last_login_ms", sa.BigInteger()),
        sa.CheckConstraint("role IN ('merchant', 'operator')", name="web_user_role"),
        sa.CheckConstraint(
            "(role = 'merchant') = (merchant_id IS NOT NULL)", name="web_user_merchant_of_role"
        ),
    )
    op.create_index("web_users_merchant", "web_users", ["merchant_id"])
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("web_sessions_user", "web_sessions", ["user_id"])
    op.create_index("web_sessions_expiry", "web_sessions", ["expires_ms"])
    op.create_table(
        "login_failures",
        sa.Column("key", sa.String(320), primary_key=True),
        sa.Column("window_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("login_failures")
    op.drop_index("web_sessions_expiry", "web_sessions")
    op.drop_index("web_sessions_user", "web_sessions")
    op.drop_table("web_sessions")
    op.drop_index("web_users_merchant", "web_users")
    op.drop_table("web_users")
