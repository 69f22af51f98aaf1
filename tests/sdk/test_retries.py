"""Lost answers are retried, a payment with the same body, so that it is paid once and
the caller still gets the payment; refusals are final but 1022, retried after its wait;
every retry is bounded."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import httpx
import pytest
from bhuktani_client import Client, State, TransportError, UnreadableResponse, ValidationError

from tests.sdk.conftest import Merchant, pay_arrownet
from tests.support import Server, cli

COMMIT = "/api/servicegroup/commit/arrownet/"


class Lossy(httpx.BaseTransport):
    """Forwards every request to the real server; the first `lose` answers to `path`
    are read, then thrown away as a read timeout (the payment was made, the caller never
    heard). `refuse_first` answers a proxy's 502 instead, without forwarding."""

    def __init__(self, path: str, *, lose: int = 0, refuse_first: int = 0) -> None:
        self.inner = httpx.HTTPTransport()
        self.path = path
        self.lose = lose
        self.refuse_first = refuse_first
        self.sent: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != self.path:
            return self.inner.handle_request(request)
        self.sent.append(request.read())
        if len(self.sent) <= self.refuse_first:
            return httpx.Response(502, text="<html>502 Bad Gateway</html>")
        response = self.inner.handle_request(request)
        if len(self.sent) <= self.lose:
            response.read()
            response.close()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def lossy_client(gateway: Server, merchant: Merchant, transport: Lossy, retries: int = 2) -> Client:
    return Client(
        gateway.base_url, merchant.test_token, retries=retries, backoff_s=0.05, transport=transport
    )


def test_a_commit_whose_answer_is_lost_is_paid_once_and_answered(
    gateway: Server, merchant: Merchant, client: Client
) -> None:
    before = client.balance().credits_available
    lossy = Lossy(COMMIT, lose=1)
    with lossy_client(gateway, merchant, lossy) as retrying:
        paid = pay_arrownet(retrying, "lost-once")
    # Sent twice, the same body: the second was refused as a duplicate and the payment
    # read back by its reference.
    assert len(lossy.sent) == 2 and lossy.sent[0] == lossy.sent[1]
    assert paid.recovered and paid.state is State.SUCCESS and paid.reference == "lost-once"
    assert paid.id == client.status("lost-once").response_id
    assert client.balance().credits_available == before - Decimal("1695.00")
    assert [t.reference for t in client.iter_transactions()] == ["lost-once"]


def test_a_commit_refused_by_a_proxy_is_sent_again_and_paid_once(
    gateway: Server, merchant: Merchant, client: Client
) -> None:
    before = client.balance().credits_available
    lossy = Lossy(COMMIT, refuse_first=2)
    with lossy_client(gateway, merchant, lossy) as retrying:
        paid = pay_arrownet(retrying, "behind-a-proxy")
    assert len(lossy.sent) == 3 and len(set(lossy.sent)) == 1
    # The third reached the gateway first: its own answer, not a read-back.
    assert not paid.recovered and paid.state is State.SUCCESS
    assert paid.credits_available == before - Decimal("1695.00")


def test_retries_are_bounded_and_the_error_names_the_reference(
    gateway: Server, merchant: Merchant, client: Client
) -> None:
    lossy = Lossy(COMMIT, lose=100)
    with (
        lossy_client(gateway, merchant, lossy, retries=3) as retrying,
        pytest.raises(TransportError) as lost,
    ):
        pay_arrownet(retrying, "never-heard")
    assert len(lossy.sent) == 4
    assert lost.value.reference == "never-heard"
    # What the caller does then: look it up. It was paid once, by the first attempt.
    assert client.status("never-heard").state is State.SUCCESS
    assert [t.reference for t in client.iter_transactions()] == ["never-heard"]


def test_a_proxy_error_after_every_attempt_is_an_unreadable_response(
    gateway: Server, merchant: Merchant, client: Client
) -> None:
    lossy = Lossy(COMMIT, refuse_first=100)
    with (
        lossy_client(gateway, merchant, lossy, retries=1) as retrying,
        pytest.raises(UnreadableResponse) as lost,
    ):
        pay_arrownet(retrying, "proxy-down")
    assert (len(lossy.sent), lost.value.status_code, lost.value.reference) == (2, 502, "proxy-down")
    assert client.bulk_status(["proxy-down"])[0].found is False


def test_a_lookup_whose_answer_is_lost_is_asked_again(
    gateway: Server, merchant: Merchant, client: Client
) -> None:
    pay_arrownet(client, "looked-up")
    lossy = Lossy("/api/service/status/", lose=2)
    with lossy_client(gateway, merchant, lossy) as retrying:
        assert retrying.status("looked-up").state is State.SUCCESS
    assert len(lossy.sent) == 3


def test_a_credit_request_whose_answer_is_lost_is_not_asked_twice(
    gateway: Server, merchant: Merchant
) -> None:
    lossy = Lossy("/api/public/creditrequest/", lose=1)
    with lossy_client(gateway, merchant, lossy) as retrying, pytest.raises(TransportError):
        retrying.credit_request(5000)
    assert len(lossy.sent) == 1
    asked = json.loads(
        cli(
            gateway.db_url, "credits", "requests", "--merchant", str(merchant.merchant_id), "--json"
        )
    )
    assert len(asked) == 1, asked


def test_a_refusal_is_never_sent_again(gateway: Server, merchant: Merchant) -> None:
    lossy = Lossy(COMMIT)
    with lossy_client(gateway, merchant, lossy) as retrying:
        retrying.details("arrownet", username="Pradhanang")
        with pytest.raises(ValidationError):
            retrying.commit(
                "arrownet", reference="bad", username="Pradhanang", amount=1, duration=1
            )
    assert len(lossy.sent) == 1


def test_a_rate_limited_call_is_sent_again_after_its_wait(
    gateway: Server, merchant: Merchant
) -> None:
    cli(
        gateway.db_url,
        "merchant",
        "set-rate-limit",
        str(merchant.merchant_id),
        "--per-s",
        "1",
        "--burst",
        "1",
    )
    lossy = Lossy("/api/balance/")
    with lossy_client(gateway, merchant, lossy) as retrying:
        started = time.monotonic()
        retrying.balance()
        retrying.balance()
        waited_s = time.monotonic() - started
    # The second was refused 1022 once, then answered after its Retry-After (1 s).
    assert len(lossy.sent) == 3
    assert waited_s >= 0.9
