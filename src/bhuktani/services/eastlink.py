"""East Link: a single-step service (khalti-docs/Internet/eastlink.md). Amounts from 100
rupees (no maximum documented: the gateway's own cap)."""

from __future__ import annotations

from bhuktani.services.single_step import MobileUse, SingleStepService

SLUG = "eastlink"

GROUP = SingleStepService(
    slug=SLUG,
    title="East Link",
    use_model=MobileUse,
    example={"username": "khaltiUser", "mobile_number": "9818766122", "amount": 100},
    max_rupees=None,
    username_pattern=None,
)
