"""Table metadata: the source of the Alembic migrations. Queries are plain SQL in store/."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY.
SerialId = BigInteger().with_variant(Integer(), "sqlite")

merchants = Table(
    "merchants",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("services", Text, nullable=False, server_default="all"),
    Column("expires_ms", BigInteger),
    Column("created_ms", BigInteger, nullable=False),
    # The merchant's own request rate limit (token bucket, per environment); NULL takes
    # the gateway's default (BHUKTANI_RATE_PER_S, BHUKTANI_RATE_BURST).
    Column("rate_per_s", Integer),
    Column("rate_burst", Integer),
    CheckConstraint("status IN ('active', 'disabled', 'deleted')", name="merchant_status"),
    CheckConstraint("rate_per_s IS NULL OR rate_per_s > 0", name="merchant_rate_positive"),
    CheckConstraint("rate_burst IS NULL OR rate_burst > 0", name="merchant_burst_positive"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("merchant_id", BigInteger, nullable=False),
    Column("env", String(4), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    # The first characters of the token, so that an operator can tell tokens apart.
    Column("hint", String(16), nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("created_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger),
    CheckConstraint("env IN ('test', 'live')", name="token_env"),
    CheckConstraint("status IN ('active', 'revoked', 'disabled')", name="token_status"),
    Index("tokens_merchant", "merchant_id"),
)

# Double-entry accounts. balance_paisa is credits minus debits posted; held_paisa is the sum
# of pending debits. Merchant accounts may never promise more than they hold.
accounts = Table(
    "accounts",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("env", String(4), nullable=False),
    Column("merchant_id", BigInteger),
    Column("code", String(64), nullable=False),
    Column("balance_paisa", BigInteger, nullable=False, server_default="0"),
    Column("held_paisa", BigInteger, nullable=False, server_default="0"),
    Column("consumed_paisa", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("kind", "env", "code", name="accounts_identity"),
    CheckConstraint("kind IN ('merchant', 'isp', 'funding', 'fees')", name="account_kind"),
    CheckConstraint("held_paisa >= 0", name="account_held_not_negative"),
    CheckConstraint(
        "kind <> 'merchant' OR balance_paisa - held_paisa >= 0",
        name="merchant_available_not_negative",
    ),
)

# Append-only. A pending transfer is closed by exactly one post or void transfer naming it.
transfers = Table(
    "transfers",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("debit_account_id", BigInteger, nullable=False),
    Column("credit_account_id", BigInteger, nullable=False),
    Column("amount_paisa", BigInteger, nullable=False),
    Column("pending_id", BigInteger, unique=True),
    Column("payment_id", BigInteger),
    Column("note", String(500)),
    Column("created_ms", BigInteger, nullable=False),
    CheckConstraint("amount_paisa > 0", name="transfer_amount_positive"),
    CheckConstraint("kind IN ('single', 'pending', 'post', 'void')", name="transfer_kind"),
    Index("transfers_payment", "payment_id"),
    # A merchant's entries by time, for its statements and its balance on a past day.
    Index("transfers_debit_time", "debit_account_id", "created_ms"),
    Index("transfers_credit_time", "credit_account_id", "created_ms"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("merchant_id", BigInteger, nullable=False),
    Column("env", String(4), nullable=False),
    Column("service", String(64), nullable=False),
    Column("isp", String(64), nullable=False),
    Column("username", String(100), nullable=False),
    Column("reference", String(50)),
    Column("offer_json", Text, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("payment_id", BigInteger),
    Column("created_ms", BigInteger, nullable=False),
    # The worker deletes expired, unspent sessions by this index.
    Index("sessions_expiry", "expires_ms"),
)

payments = Table(
    "payments",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("merchant_id", BigInteger, nullable=False),
    Column("env", String(4), nullable=False),
    Column("reference", String(50), nullable=False),
    Column("service", String(64), nullable=False),
    Column("isp", String(64), nullable=False),
    Column("username", String(100), nullable=False),
    Column("package_code", String(32)),
    Column("package_title", String(100), nullable=False, server_default=""),
    Column("duration_code", String(32), nullable=False),
    Column("days", Integer, nullable=False),
    Column("amount_paisa", BigInteger, nullable=False),
    Column("session_id", BigInteger),
    Column("state", String(16), nullable=False),
    Column("isp_status", String(32), nullable=False, server_default="Sent"),
    Column("detail", String(500), nullable=False, server_default=""),
    Column("hold_transfer_id", BigInteger),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("next_check_ms", BigInteger),
    Column("lease_until_ms", BigInteger, nullable=False, server_default="0"),
    Column("checks", Integer, nullable=False, server_default="0"),
    Column("flagged", Boolean, nullable=False, server_default=false()),
    # Why the payment waits for an operator, in the words of what flagged it.
    Column("flag_reason", String(200)),
    # Reconciler rounds in a row that could not finish the payment (an unreadable answer,
    # a failed write): kept here so that every worker, and a restarted one, counts on.
    Column("failed_rounds", Integer, nullable=False, server_default="0"),
    # The merchant's service charge on this payment, held with amount_paisa in one hold
    # and moved to the fees account when the payment posts (ledger/accounts.py).
    Column("charge_paisa", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("merchant_id", "env", "reference", name="payments_reference"),
    CheckConstraint(
        "state IN ('Queued', 'Processing', 'Success', 'Failed')",
        name="payment_state",
    ),
    Index("payments_due", "state", "next_check_ms"),
    # A merchant's payments newest first, walked by keyset (GET /api/transactions/).
    Index("payments_merchant_time", "merchant_id", "env", "created_ms", "id"),
)

# The simulated ISPs of the sandbox keep their subscribers and what they applied here,
# one copy per merchant so that no merchant sees another's test payments.
sandbox_subscribers = Table(
    "sandbox_subscribers",
    metadata,
    Column("merchant_id", BigInteger, primary_key=True),
    Column("isp", String(64), primary_key=True),
    Column("username", String(100), primary_key=True),
    Column("current_plan", String(100), nullable=False),
    Column("days_remaining", Integer, nullable=False),
    # The codes of the one-time offers paid (bills, dues), one per line.
    Column("paid", Text, nullable=False, server_default=""),
)

sandbox_payments = Table(
    "sandbox_payments",
    metadata,
    Column("payment_id", BigInteger, primary_key=True, autoincrement=False),
    Column("merchant_id", BigInteger, nullable=False),
    Column("isp", String(64), nullable=False),
    Column("username", String(100), nullable=False),
    Column("amount_paisa", BigInteger, nullable=False),
    Column("receipt", String(32), nullable=False),
    Column("visible_ms", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

# The outbox of delivery callbacks (DLR): written in the transaction that makes a payment
# final, so a crash cannot lose one; sent at least once by the deliverer.
callbacks = Table(
    "callbacks",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("merchant_id", BigInteger, nullable=False),
    Column("env", String(4), nullable=False),
    # The payment a DLR is about; NULL for an event about no payment (balance.low).
    Column("payment_id", BigInteger),
    # What the callback tells: "payment" (a DLR), "dispute.resolved", "balance.low".
    Column("event_type", String(32), nullable=False, server_default="payment"),
    Column("url", String(2000), nullable=False),
    Column("payload_json", Text, nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_ms", BigInteger),
    Column("lease_until_ms", BigInteger, nullable=False, server_default="0"),
    Column("created_ms", BigInteger, nullable=False),
    Column("delivered_ms", BigInteger),
    CheckConstraint("status IN ('pending', 'delivered', 'expired')", name="callback_status"),
    Index("callbacks_due", "status", "next_attempt_ms"),
    Index("callbacks_payment", "payment_id"),
)

# Where each environment's delivery callbacks go and the secrets that sign them
# (Standard Webhooks: `whsec_` + standard base64 of the key), read at every attempt. After
# a rotation the previous secret signs beside the new one until previous_until_ms.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("merchant_id", BigInteger, primary_key=True),
    Column("env", String(4), primary_key=True),
    # NULL: no callbacks are queued; those already queued wait (callbacks/outbox.py).
    Column("url", String(2000)),
    Column("secret", String(100), nullable=False),
    Column("previous_secret", String(100)),
    Column("previous_until_ms", BigInteger),
    Column("updated_ms", BigInteger, nullable=False),
    CheckConstraint("env IN ('test', 'live')", name="webhook_endpoint_env"),
    CheckConstraint(
        "(previous_secret IS NULL) = (previous_until_ms IS NULL)",
        name="webhook_endpoint_previous_has_end",
    ),
)

callback_attempts = Table(
    "callback_attempts",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("callback_id", BigInteger, nullable=False),
    Column("attempted_ms", BigInteger, nullable=False),
    Column("http_status", Integer),
    Column("latency_ms", Integer, nullable=False),
    Column("error", String(200)),
    Index("callback_attempts_callback", "callback_id"),
)

# Every operator action on a payment, with who, why and how much: the ledger moves money,
# this says why it moved.
operator_actions = Table(
    "operator_actions",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("payment_id", BigInteger, nullable=False),
    Column("action", String(16), nullable=False),
    Column("amount_paisa", BigInteger),
    Column("transfer_id", BigInteger),
    Column("operator", String(100), nullable=False),
    Column("note", String(500), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    CheckConstraint(
        "action IN ('resolve_success', 'resolve_failed', 'refund')", name="action_kind"
    ),
    Index("operator_actions_payment", "payment_id"),
)

# The shared token bucket of each merchant and environment (ratelimit/merchants.py): every
# process of every host leases its tokens here, so the limit holds across them. UNLOGGED
# on PostgreSQL (migration 0005): it is rewritten all day and worth nothing after a crash,
# where an empty table means full buckets.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("merchant_id", BigInteger, primary_key=True),
    Column("env", String(4), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("granted", Integer, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)


# Every operator action (merchants, tokens, credits, charges, disputes, resolve, refund):
# who did what, to whom, when, with what. Appended, never changed.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("operator", String(100), nullable=False),
    Column("action", String(64), nullable=False),
    Column("merchant_id", BigInteger),
    Column("env", String(4)),
    Column("subject", String(100)),
    Column("details_json", Text, nullable=False, server_default="{}"),
    Index("audit_log_time", "at_ms"),
    Index("audit_log_merchant", "merchant_id", "at_ms"),
)

# A merchant's request for credits (POST /api/public/creditrequest/), until an operator
# approves it (a load) or rejects it.
credit_requests = Table(
    "credit_requests",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("merchant_id", BigInteger, nullable=False),
    Column("env", String(4), nullable=False),
    Column("amount_paisa", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("created_ms", BigInteger, nullable=False),
    Column("decided_ms", BigInteger),
    Column("decided_by", String(100)),
    Column("note", String(500)),
    Column("transfer_id", BigInteger),
    CheckConstraint("amount_paisa > 0", name="credit_request_amount"),
    CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="credit_request_status"),
    Index("credit_requests_status", "status", "created_ms"),
    Index("credit_requests_merchant", "merchant_id", "created_ms"),
)


# A merchant's service charge on a service (a group's slug, or one ISP's slug, which wins
# over its group's): flat, or a percentage of the amount within an optional min and max.
service_charges = Table(
    "service_charges",
    metadata,
    Column("merchant_id", BigInteger, primary_key=True),
    Column("env", String(4), primary_key=True),
    Column("service", String(64), primary_key=True),
    Column("flat_paisa", BigInteger),
    # Hundredths of a percent: 1.5 % is 150.
    Column("percent_bp", Integer),
    Column("min_paisa", BigInteger),
    Column("max_paisa", BigInteger),
    Column("updated_ms", BigInteger, nullable=False),
    CheckConstraint("(flat_paisa IS NULL) <> (percent_bp IS NULL)", name="charge_one_kind"),
    CheckConstraint("flat_paisa IS NULL OR flat_paisa >= 0", name="charge_flat_not_negative"),
    CheckConstraint("percent_bp IS NULL OR percent_bp >= 0", name="charge_percent_not_negative"),
)

# A merchant's dispute of a payment, until an operator refunds it or rejects it.
disputes = Table(
    "disputes",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("merchant_id", BigInteger, nullable=False),
    Column("env", String(4), nullable=False),
    Column("payment_id", BigInteger, nullable=False),
    Column("reference", String(50), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("created_ms", BigInteger, nullable=False),
    Column("resolved_ms", BigInteger),
    Column("resolved_by", String(100)),
    Column("note", String(500)),
    Column("refund_paisa", BigInteger),
    Column("refund_transfer_id", BigInteger),
    CheckConstraint("status IN ('open', 'refunded', 'rejected')", name="dispute_status"),
    Index("disputes_merchant", "merchant_id", "env", "created_ms"),
    Index("disputes_status", "status", "created_ms"),
    Index("disputes_payment", "payment_id"),
)

# A merchant's low-balance threshold per environment, and whether balance.low was sent
# for the current dip (sent again only after the balance has gone back above it).
balance_alerts = Table(
    "balance_alerts",
    metadata,
    Column("merchant_id", BigInteger, primary_key=True),
    Column("env", String(4), primary_key=True),
    Column("below_paisa", BigInteger, nullable=False),
    Column("alerted", Boolean, nullable=False, server_default=false()),
    Column("updated_ms", BigInteger, nullable=False),
    CheckConstraint("below_paisa > 0", name="balance_alert_positive"),
)

# A merchant account's available credits at the end of a past day (Nepal time): a
# statement's opening and credits/bydate read the nearest one instead of all history.
# Written once the day is over; transfers are append-only, so it never changes.
balance_closings = Table(
    "balance_closings",
    metadata,
    Column("account_id", BigInteger, primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("available_paisa", BigInteger, nullable=False),
    Column("computed_ms", BigInteger, nullable=False),
)

# Each comparison of an ISP's daily settlement report with our Success set.
settlements = Table(
    "settlements",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("env", String(4), nullable=False),
    Column("isp", String(64), nullable=False),
    Column("day", String(10), nullable=False),
    Column("ran_ms", BigInteger, nullable=False),
    Column("matched_count", Integer, nullable=False),
    Column("matched_paisa", BigInteger, nullable=False),
    Column("ours_only", Integer, nullable=False),
    Column("theirs_only", Integer, nullable=False),
    Column("amount_mismatches", Integer, nullable=False),
    Column("report_json", Text, nullable=False),
    Index("settlements_isp_day", "isp", "day"),
)

# The people who sign in to the dashboard (a merchant's staff: role 'merchant', one
# merchant) and to the operator console (role 'operator'). The password is an argon2
# hash; a password the CLI printed must be changed at first sign-in (must_change).
web_users = Table(
    "web_users",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("merchant_id", BigInteger),
    Column("password_hash", String(255), nullable=False),
    Column("must_change", Boolean, nullable=False, server_default=false()),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_ms", BigInteger, nullable=False),
    Column("password_changed_ms", BigInteger),
    Column("last_login_ms", BigInteger),
    CheckConstraint("role IN ('merchant', 'operator')", name="web_user_role"),
    CheckConstraint(
        "(role = 'merchant') = (merchant_id IS NOT NULL)", name="web_user_merchant_of_role"
    ),
    Index("web_users_merchant", "merchant_id"),
)

# A signed-in browser: the cookie holds a random token, the table its SHA-256; each
# session has its own CSRF token, which every form sends back.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Index("web_sessions_user", "user_id"),
    Index("web_sessions_expiry", "expires_ms"),
)

# Failed sign-ins by key ("email:<address>", "client:<address>") in the current window:
# past the limit, the key is refused until the window ends, whatever the password.
login_failures = Table(
    "login_failures",
    metadata,
    Column("key", String(320), primary_key=True),
    Column("window_start_ms", BigInteger, nullable=False),
    Column("failures", Integer, nullable=False),
)
