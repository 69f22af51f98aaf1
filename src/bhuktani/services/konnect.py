"""Konnect (KCMS, one billing system behind several ISPs): khalti-docs/Internet/konnect.md.
The ISP is named by `service_slug`; the details and the commit are those of
customer_packages, the shape this document shares with others."""

from __future__ import annotations

from typing import Any

from bhuktani.services.base import (
    DetailsQuery,
    Examples,
    ServiceSlugDetails,
    parse_slug_details,
)
from bhuktani.services.customer_packages import CustomerPackagesGroup
from bhuktani.services.fields import WireModel

SLUG = "konnect"

# The document also lists an ISP it says has moved to a service group of its own; it is
# that group's, not one of these (decision K1).
ISPS = (
    "izone",
    "world-fiber-net",
    "dg-link",
    "loop-network",
    "acme-internet",
)


class Konnect(CustomerPackagesGroup):
    slug = SLUG
    title = "Konnect (KCMS)"
    isps: tuple[str, ...] = ISPS
    details_model: type[WireModel] = ServiceSlugDetails
    examples = Examples(
        details={"username": "active", "service_slug": "izone"},
        commit={"package_id": "1-13286-5-3", "amount": "5999", "session_id": "179"},
    )

    def parse_details(self, data: dict[str, Any]) -> DetailsQuery:
        return parse_slug_details(data, ISPS)


GROUP = Konnect()
