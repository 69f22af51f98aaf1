"""Pokhara Internet: its example over the API on both databases, queued, then settled by the
reconciler. The request and answer are tests/services/fixtures/pokhara_internet.json."""

from __future__ import annotations

from typing import Any

from bhuktani.merchants.service import NewMerchant
from bhuktani.services.pokhara_internet import GROUP
from tests.conftest import AppClient
from tests.services.single_step import FIXTURES_OF, check_queued_then_settled

FIXTURES: dict[str, Any] = FIXTURES_OF("pokhara_internet")


def test_the_example_is_the_fixtures_request() -> None:
    assert GROUP.example == FIXTURES["use"]["request"]


async def test_the_example_is_queued_then_settled(client: AppClient, merchant: NewMerchant) -> None:
    await check_queued_then_settled(client, merchant, GROUP, FIXTURES)
