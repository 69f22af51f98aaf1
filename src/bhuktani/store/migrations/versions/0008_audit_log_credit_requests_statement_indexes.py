"""the merchant's money: audit log, credit requests, service charges, disputes,
low-balance alerts, day closings, ISP settlements; callbacks about more than payments

Operators' actions are recorded in audit_log; merchants ask for credits in
credit_requests, set charges in service_charges, raise disputes; a merchant's transfers
and payments are read by account and time for statements, credits by date and the
transaction list.

Cost at deploy: seven new tables and a new column with a default (instant on
PostgreSQL 11+); callbacks.payment_id made nullable (instant on PostgreSQL; SQLite copies
the table); three indexes on transfers and payments, built inside the upgrade's
transaction: on PostgreSQL each reads the whole table under a lock that stops new
payments until it is built, a few seconds per million rows. A large deployment builds
them first with CREATE INDEX CONCURRENTLY under the same names, then upgrades.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 07:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("operator", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("merchant_id", sa.BigInteger()),
        sa.Column("env", sa.String(4)),
        sa.Column("subject", sa.String(100)),
        sa.Column("details_json", sa.Text(), nullable=False, server_default="{}"),
    )
    op.create_index("audit_log_time", "audit_log", ["at_ms"])
    op.create_index("audit_log_merchant", "audit_log", ["merchant_id", "at_ms"])
    op.create_table(
        "credit_requests",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("merchant_id", sa.BigInteger(), nullable=False),
        sa.Column("env", sa.String(4), nullable=False),
        sa.Column("amount_paisa", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("decided_ms", sa.BigInteger()),
        sa.Column("decided_by", sa.String(100)),
        sa.Column("note", sa.String(500)),
        sa.Column("transfer_id", sa.BigInteger()),
        sa.CheckConstraint("amount_paisa > 0", name="credit_request_amount"),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected')", name="credit_request_status"
        ),
    )
    op.create_index("credit_requests_status", "credit_requests", ["status", "created_ms"])
    op.create_index("credit_requests_merchant", "credit_requests", ["merchant_id", "created_ms"])
    op.create_table(
        "service_charges",
        sa.Column("merchant_id", sa.BigInteger(), primary_key=True),
        sa.Column("env", sa.String(4), primary_key=True),
        sa.Column("service", sa.String(64), primary_key=True),
        sa.Column("flat_paisa", sa.BigInteger()),
        sa.Column("percent_bp", sa.Integer()),
        sa.Column("min_paisa", sa.BigInteger()),
        sa.Column("max_paisa", sa.BigInteger()),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("(flat_paisa IS NULL) <> (percent_bp IS NULL)", name="charge_one_kind"),
        sa.CheckConstraint(
            "flat_paisa IS NULL OR flat_paisa >= 0", name="charge_flat_not_negative"
        ),
        sa.CheckConstraint(
            "percent_bp IS NULL OR percent_bp >= 0", name="charge_percent_not_negative"
        ),
    )
    op.create_table(
        "disputes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("merchant_id", sa.BigInteger(), nullable=False),
        sa.Column("env", sa.String(4), nullable=False),
        sa.Column("payment_id", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(50), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("resolved_ms", sa.BigInteger()),
        sa.Column("resolved_by", sa.String(100)),
        sa.Column("note", sa.String(500)),
        sa.Column("refund_paisa", sa.BigInteger()),
        sa.Column("refund_transfer_id", sa.BigInteger()),
        sa.CheckConstraint("status IN ('open', 'refunded', 'rejected')", name="dispute_status"),
    )
    op.create_index("disputes_merchant", "disputes", ["merchant_id", "env", "created_ms"])
    op.create_index("disputes_status", "disputes", ["status", "created_ms"])
    op.create_index("disputes_payment", "disputes", ["payment_id"])
    op.create_table(
        "balance_alerts",
        sa.Column("merchant_id", sa.BigInteger(), primary_key=True),
        sa.Column("env", sa.String(4), primary_key=True),
        sa.Column("below_paisa", sa.BigInteger(), nullable=False),
        sa.Column("alerted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("below_paisa > 0", name="balance_alert_positive"),
    )
    op.create_table(
        "balance_closings",
        sa.Column("account_id", sa.BigInteger(), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("available_paisa", sa.BigInteger(), nullable=False),
        sa.Column("computed_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "settlements",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("env", sa.String(4), nullable=False),
        sa.Column("isp", sa.String(64), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("ran_ms", sa.BigInteger(), nullable=False),
        sa.Column("matched_count", sa.Integer(), nullable=False),
        sa.Column("matched_paisa", sa.BigInteger(), nullable=False),
        sa.Column("ours_only", sa.Integer(), nullable=False),
        sa.Column("theirs_only", sa.Integer(), nullable=False),
        sa.Column("amount_mismatches", sa.Integer(), nullable=False),
        sa.Column("report_json", sa.Text(), nullable=False),
    )
    op.create_index("settlements_isp_day", "settlements", ["isp", "day"])
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("charge_paisa", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_index(
        "payments_merchant_time", "payments", ["merchant_id", "env", "created_ms", "id"]
    )
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.alter_column("payment_id", existing_type=sa.BigInteger(), nullable=True)
        batch_op.add_column(
            sa.Column("event_type", sa.String(32), nullable=False, server_default="payment")
        )
    op.create_index("transfers_debit_time", "transfers", ["debit_account_id", "created_ms"])
    op.create_index("transfers_credit_time", "transfers", ["credit_account_id", "created_ms"])


def downgrade() -> None:
    op.drop_index("transfers_credit_time", table_name="transfers")
    op.drop_index("transfers_debit_time", table_name="transfers")
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.drop_column("event_type")
        batch_op.alter_column("payment_id", existing_type=sa.BigInteger(), nullable=False)
    op.drop_index("payments_merchant_time", table_name="payments")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("charge_paisa")
    for table in (
        "settlements",
        "balance_closings",
        "balance_alerts",
        "disputes",
        "service_charges",
        "credit_requests",
        "audit_log",
    ):
        op.drop_table(table)
