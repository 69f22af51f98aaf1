"""Pokhara Internet: a single-step service (khalti-docs/Internet/pokhara-internet.md).
Amounts from 100 to 50,000 rupees."""

from __future__ import annotations

from bhuktani.services.single_step import AddressUse, SingleStepService

SLUG = "pokhara-internet"

GROUP = SingleStepService(
    slug=SLUG,
    title="Pokhara Internet",
    use_model=AddressUse,
    example={
        "username": "khaltiUser",
        "number": "9818766122",
        "amount": 100,
        "address": "Amarsingh",
    },
    max_rupees=50000,
    username_pattern=None,
)
