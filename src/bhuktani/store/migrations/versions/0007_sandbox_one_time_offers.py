"""sandbox subscribers remember the one-time offers they paid

A bill or a due is paid once: the sandbox keeps the codes paid per subscriber, so that
the next details call no longer offers them and the ISP refuses them again.

Cost at deploy: a column with a constant default; SQLite and PostgreSQL add it without
rewriting the table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 06:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "sandbox_subscribers",
        sa.Column("paid", sa.Text(), nullable=False, server_default=""),
    )


def downgrade() -> None:
    with op.batch_alter_table("sandbox_subscribers", schema=None) as batch_op:
        batch_op.drop_column("paid")
