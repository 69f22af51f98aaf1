"""Every call of the SDK end to end against a real gateway, with the sandbox's example
subscribers of every service (the bodies the demo's curls send)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from bhuktani_client import Client, State

from bhuktani.services import registry
from bhuktani.services.base import ServiceGroup
from bhuktani.services.single_step import SingleStepService
from tests.sdk.conftest import Merchant, new_reference, pay_arrownet, today
from tests.support import Server, cli


@pytest.mark.parametrize("group", registry.GROUPS, ids=lambda g: g.slug)
def test_details_then_commit_pays_every_group_example(client: Client, group: ServiceGroup) -> None:
    before = client.balance()
    details = client.details(group.slug, **group.examples.details)
    assert details.reference.startswith("details-")
    fields = dict(group.examples.commit)
    if group.uses_sessions:
        assert details.session_id is not None, details.raw
        fields["session_id"] = details.session_id
    else:
        assert details.session_id is None
    reference = new_reference(group.slug)
    paid = client.commit(group.slug, reference=reference, **fields)
    assert paid.state is State.SUCCESS, paid.raw
    assert paid.reference == reference and paid.id > 0 and not paid.recovered
    after = client.balance()
    taken = before.credits_available - after.credits_available
    assert taken > 0
    assert after.credits_consumed == before.credits_consumed + taken
    # Where the group's document shows the credits fields, they tell the same.
    assert paid.credits_consumed in (None, taken)
    assert paid.credits_available in (None, after.credits_available)
    looked_up = client.status(reference)
    assert (looked_up.state, looked_up.response_id) == (State.SUCCESS, paid.id)


@pytest.mark.parametrize("service", registry.SINGLE_STEP, ids=lambda s: s.slug)
def test_pay_single_is_queued_then_final(client: Client, service: SingleStepService) -> None:
    reference = new_reference(service.slug)
    queued = client.pay_single(service.slug, reference=reference, **service.example)
    assert queued.state is State.QUEUED, queued.raw
    assert queued.credits_consumed == Decimal(service.example["amount"])
    final = client.wait(reference, timeout_s=30, first_poll_s=0.1)
    assert final.state is State.SUCCESS
    assert final.response_id == queued.id


def test_status_and_bulk_status_read_payments_and_unknown_references(client: Client) -> None:
    paid = pay_arrownet(client, "bulk-1")
    status = client.status("bulk-1")
    assert status.is_final and status.amount == Decimal("1695.00")
    assert (status.refunded, status.refunded_amount, status.refunds) == (False, 0, [])
    entries = client.bulk_status(["bulk-1", "never-used"])
    assert [(e.reference, e.found, e.response_id) for e in entries] == [
        ("bulk-1", True, paid.id),
        ("never-used", False, 0),
    ]
    # More than one request's worth: split in requests of 100, answered in order.
    many = [f"missing-{i}" for i in range(150)] + ["bulk-1"]
    answered = client.bulk_status(many)
    assert [e.reference for e in answered] == many
    assert [e.found for e in answered] == [False] * 150 + [True]


def test_the_days_books_statement_and_credits_by_date(client: Client) -> None:
    opening = client.balance().credits_available
    paid = pay_arrownet(client, "books-1")
    statement = client.statement(today())
    assert statement.date == today().isoformat()
    assert (
        statement.opening
        + statement.loads
        - statement.payments
        - statement.charges
        + (statement.refunds)
        == statement.closing
    )
    assert [e.kind for e in statement.entries] == ["load", "payment"]
    assert statement.entries[-1].reference == "books-1"
    assert statement.entries[-1].response_id == paid.id
    assert statement.closing == opening - Decimal("1695.00")
    assert client.credits_by_date(today().isoformat()) == statement.closing
    text = client.statement(today().isoformat(), csv=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["kind"], r["amount"]) for r in rows] == [
        ("load", "1000000.00"),
        ("payment", "1695.00"),
    ]


def test_transactions_are_filtered_and_walked_page_by_page(client: Client) -> None:
    references = [f"walk-{i}" for i in range(5)]
    for reference in references:
        pay_arrownet(client, reference)
    page = client.transactions(limit=2)
    assert len(page.results) == 2 and page.next_cursor is not None
    assert [t.reference for t in page.results] == ["walk-4", "walk-3"]
    walked = list(client.iter_transactions(limit=2))
    assert [t.reference for t in walked] == references[::-1]
    assert {t.service for t in walked} == {"arrownet"}
    assert all(t.charge == 0 and t.state is State.SUCCESS for t in walked)
    some = client.transactions(reference="walk-1", state="Success", service="arrownet")
    assert [t.reference for t in some.results] == ["walk-1"]
    assert client.transactions(state="Failed").results == []
    assert len(list(client.iter_transactions(from_date=today(), to_date=today()))) == 5


def test_service_charge_is_quoted_and_taken(
    gateway: Server, merchant: Merchant, client: Client
) -> None:
    assert client.service_charge("arrownet", 1695).service_charge == 0
    cli(
        gateway.db_url,
        "charges",
        "set",
        str(merchant.merchant_id),
        "arrownet",
        "--env",
        "test",
        "--flat",
        "10",
    )
    quote = client.service_charge("arrownet", Decimal("1695.00"))
    assert (quote.amount, quote.service_charge) == (Decimal(1695), Decimal(10))
    paid = pay_arrownet(client, "charged-1")
    assert paid.credits_consumed == Decimal("1705.00")


def test_credit_request_is_asked_and_approved(
    gateway: Server, merchant: Merchant, client: Client
) -> None:
    before = client.balance().credits_available
    asked = client.credit_request(Decimal("5000.50"))
    assert asked.detail == "Credit Requested" and asked.request_id > 0
    cli(gateway.db_url, "credits", "approve", str(asked.request_id))
    assert client.balance().credits_available == before + Decimal("5000.50")


def test_a_dispute_is_raised_listed_and_resolved(gateway: Server, client: Client) -> None:
    paid = pay_arrownet(client, "disputed-1")
    raised = client.raise_dispute("disputed-1", "Not applied by the ISP")
    assert (raised.reference, raised.response_id, raised.status) == ("disputed-1", paid.id, "open")
    assert raised.amount == Decimal("1695.00") and raised.refund_amount is None
    pay_arrownet(client, "disputed-2")
    second = client.raise_dispute("disputed-2", "Charged twice")
    page = client.disputes(limit=1)
    assert [d.id for d in page.results] == [second.id] and page.next_cursor is not None
    assert [d.id for d in client.iter_disputes(limit=1)] == [second.id, raised.id]
    cli(
        gateway.db_url,
        "disputes",
        "resolve",
        str(raised.id),
        "--refund",
        "--note",
        "ISP reversed it",
    )
    refunded = client.disputes(status="refunded").results
    assert [(d.id, d.refund_amount, d.note) for d in refunded] == [
        (raised.id, Decimal("1695.00"), "ISP reversed it")
    ]
    assert client.status("disputed-1").refunded_amount == Decimal("1695.00")
