"""The registry's groups, each as its own module declares it: its ISPs belong to it alone,
its sandbox subscriber is priced, its examples parse, succeed against the sandbox, and are
the examples of the API schema."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bhuktani.merchants.service import NewMerchant
from bhuktani.services import registry
from bhuktani.services.base import ServiceGroup
from tests.conftest import AppClient
from tests.support import assert_books_balance

GROUPS = [pytest.param(group, id=group.slug) for group in registry.GROUPS]


def fresh(example: dict[str, Any], token: str = "TEST:x") -> dict[str, Any]:
    return {"token": token, "reference": f"ref-{uuid.uuid4().hex}", **example}


def test_an_isp_belongs_to_one_group_and_a_slug_names_one() -> None:
    isps = [isp for service in registry.SERVICES for isp in service.isps]
    assert len(isps) == len(set(isps))
    assert len(registry.BY_SLUG) == len(registry.SERVICES) == len(registry.MODULES)
    assert len(registry.GROUPS) + len(registry.SINGLE_STEP) == len(registry.SERVICES)
    for service in registry.SERVICES:
        for isp in service.isps:
            assert registry.group_of(isp) is service


@pytest.mark.parametrize("group", GROUPS)
def test_the_sandbox_subscribers_have_something_priced_to_pay(group: ServiceGroup) -> None:
    """The first is the scenario users' base: each of them must have an offer to pay."""
    assert group.sandbox_subscribers[0].offers()
    for subscriber in group.sandbox_subscribers:
        assert all(d.amount_paisa > 0 and d.days >= 0 for _, d in subscriber.offers())


@pytest.mark.parametrize("group", GROUPS)
def test_the_examples_parse(group: ServiceGroup) -> None:
    details = group.parse_details(fresh(group.examples.details))
    assert details.isp in group.isps
    commit = group.parse_commit(fresh(group.examples.commit))
    assert (commit.session_id is not None) == group.uses_sessions


@pytest.mark.parametrize("group", GROUPS)
async def test_the_examples_succeed_against_the_sandbox(
    client: AppClient, merchant: NewMerchant, group: ServiceGroup
) -> None:
    details = await client.post(
        f"/api/servicegroup/details/{group.slug}/",
        json=fresh(group.examples.details, merchant.test_token),
    )
    assert details.status_code == 200, details.text
    commit = fresh(group.examples.commit, merchant.test_token)
    if group.uses_sessions:
        commit["session_id"] = details.json()["session_id"]
    paid = await client.post(f"/api/servicegroup/commit/{group.slug}/", json=commit)
    assert paid.status_code == 200, paid.text
    assert paid.json()["state"] == "Success"
    await assert_books_balance(client.gateway.db)


async def test_the_api_schema_shows_each_groups_own_examples(client: AppClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for group in registry.GROUPS:
        for verb, example in (
            ("details", group.examples.details),
            ("commit", group.examples.commit),
        ):
            body = paths[f"/api/servicegroup/{verb}/{group.slug}/"]["post"]["requestBody"]
            shown = body["content"]["application/json"]["example"]
            assert shown.pop("token").startswith("TEST:")
            assert isinstance(shown.pop("reference"), str)
            assert shown == example, (group.slug, verb)
    for service in registry.SINGLE_STEP:
        body = paths[f"/api/use/{service.slug}/"]["post"]["requestBody"]
        shown = body["content"]["application/json"]["example"]
        assert shown.pop("token").startswith("TEST:")
        assert isinstance(shown.pop("reference"), str)
        assert shown == service.example, service.slug
