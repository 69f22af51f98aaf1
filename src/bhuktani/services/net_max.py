"""Net Max (one ISP): khalti-docs/Internet/netmax.md. The details and the commit are
those of customer_packages, the shape this document shares with others; its one example
answer is that shape's expired test user, word for word (decision K4)."""

from __future__ import annotations

from typing import Any

from bhuktani.services.base import DetailsQuery, Examples
from bhuktani.services.customer_packages import CustomerPackagesGroup
from bhuktani.services.fields import Reference, Username, WireModel, parse, reference_present

SLUG = "net-max"


class DetailsRequest(WireModel):
    reference: Reference
    username: Username


class NetMax(CustomerPackagesGroup):
    slug = SLUG
    title = "Net Max"
    isps: tuple[str, ...] = (SLUG,)
    details_model: type[WireModel] = DetailsRequest
    examples = Examples(
        details={"username": "expired"},
        commit={"package_id": "1-4412-8-1", "amount": "1850", "session_id": "8"},
    )

    def parse_details(self, data: dict[str, Any]) -> DetailsQuery:
        reference_present(data)
        request = parse(DetailsRequest, data)
        return DetailsQuery(isp=SLUG, username=request.username, reference=request.reference)


GROUP = NetMax()
