"""rate limits per merchant, why a payment was flagged and its failed rounds, sessions by expiry

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 19:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_per_s", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rate_burst", sa.Integer(), nullable=True))
        batch_op.create_check_constraint(
            "merchant_rate_positive", "rate_per_s IS NULL OR rate_per_s > 0"
        )
        batch_op.create_check_constraint(
            "merchant_burst_positive", "rate_burst IS NULL OR rate_burst > 0"
        )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flag_reason", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("failed_rounds", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index("sessions_expiry", ["expires_ms"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("sessions_expiry")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("failed_rounds")
        batch_op.drop_column("flag_reason")
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.drop_constraint("merchant_burst_positive", type_="check")
        batch_op.drop_constraint("merchant_rate_positive", type_="check")
        batch_op.drop_column("rate_burst")
        batch_op.drop_column("rate_per_s")
