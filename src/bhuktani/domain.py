"""The words every layer shares: a payment's states and the two environments.

Both are StrEnums: a member is its wire spelling (`State.SUCCESS == "Success"`), so rows,
JSON and log lines carry the same text they always did.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    # Single-step services whose ISP confirms later (Khalti's Queued); nothing writes it yet.
    QUEUED = "Queued"
    PROCESSING = "Processing"
    SUCCESS = "Success"
    FAILED = "Failed"


# A final state never changes; a refund is a new ledger entry, not an edit.
FINAL_STATES = frozenset({State.SUCCESS, State.FAILED})


class Env(StrEnum):
    TEST = "test"
    LIVE = "live"
