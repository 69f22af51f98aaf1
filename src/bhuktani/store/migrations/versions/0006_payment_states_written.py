"""payment states: only those written

A payment is Processing, Success or Failed (and Queued, for the single-step services
the catalogue adds); nothing ever wrote Error or Expired, so the CHECK no longer admits
them.

Cost at deploy: SQLite copies the payments table (it cannot change a CHECK in place);
PostgreSQL checks every payment against the new CHECK, one scan of the table under its
lock, inside the upgrade's one transaction: seconds for a few million payments, during
which commits wait.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 04:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

WRITTEN = "state IN ('Queued', 'Processing', 'Success', 'Failed')"
BEFORE = "state IN ('Queued', 'Processing', 'Success', 'Failed', 'Error', 'Expired')"


def _state_check(condition: str) -> None:
    # SQLite changes a CHECK by copying the table (batch mode); PostgreSQL in place.
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_constraint("payment_state", type_="check")
        batch_op.create_check_constraint("payment_state", condition)


def upgrade() -> None:
    _state_check(WRITTEN)


def downgrade() -> None:
    _state_check(BEFORE)
