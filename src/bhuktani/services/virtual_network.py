"""Virtual Network: a single-step service (khalti-docs/Internet/Virtual-network.md).
Amounts from 100 rupees (no maximum documented: the gateway's own cap); usernames as
its pattern `[a-zA-Z0-9_]+`."""

from __future__ import annotations

from bhuktani.services.single_step import MobileUse, SingleStepService

SLUG = "virtual-network"

GROUP = SingleStepService(
    slug=SLUG,
    title="Virtual Network",
    use_model=MobileUse,
    example={"username": "khaltiUser", "mobile_number": "9818766122", "amount": 100},
    max_rupees=None,
    username_pattern=r"[a-zA-Z0-9_]+",
)
