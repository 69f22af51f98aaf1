"""Each refusal of the gateway reaches the caller as its family's error, with the
envelope's fields; lost answers as TransportError. Refusals made by the real gateway,
but for the two codes it cannot be made to answer on purpose (1009, 1017)."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from bhuktani_client import (
    ApiError,
    AuthenticationError,
    CannotFulfil,
    Client,
    DuplicateReference,
    InsufficientBalance,
    IspRefused,
    NotFound,
    NothingToPay,
    PermissionDenied,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    UnknownReference,
    UnreadableResponse,
    ValidationError,
)

from tests.sdk.conftest import Merchant, new_merchant, pay_arrownet, today
from tests.support import Server, cli, free_port


def test_an_unknown_token_is_an_authentication_error(gateway: Server) -> None:
    with (
        Client(gateway.base_url, "TEST:no-such-token") as stranger,
        pytest.raises(AuthenticationError) as refused,
    ):
        stranger.balance()
    error = refused.value
    assert (error.status_code, error.error_code, error.error) == (400, "1002", "token_not_found")
    assert error.message == "Invalid token" and error.error_data == {}


def test_a_revoked_token_is_an_authentication_error(gateway: Server, merchant: Merchant) -> None:
    cli(gateway.db_url, "token", "revoke", merchant.test_token)
    with (
        Client(gateway.base_url, merchant.test_token) as revoked,
        pytest.raises(AuthenticationError) as refused,
    ):
        revoked.balance()
    assert refused.value.error_code == "1003"


def test_a_wrong_amount_is_a_validation_error_naming_the_field(client: Client) -> None:
    client.details("arrownet", username="Pradhanang")
    with pytest.raises(ValidationError) as refused:
        client.commit(
            "arrownet", reference="wrong-amount", username="Pradhanang", amount="998", duration=1
        )
    assert refused.value.error_code == "1010"
    assert list(refused.value.error_data) == ["amount"]


def test_a_missing_reference_is_a_validation_error(client: Client) -> None:
    with pytest.raises(ValidationError) as refused:
        client.pay_single(
            "eastlink", reference="", username="khaltiUser", mobile_number="98", amount=100
        )
    assert refused.value.error_code == "1012"


def test_a_bare_refusal_is_a_validation_error_without_a_code(client: Client) -> None:
    with pytest.raises(ValidationError) as refused:
        client.credits_by_date(today().replace(year=today().year + 1))
    assert refused.value.error_code is None
    assert refused.value.details == "Invalid date: the date is in the future"


def test_a_used_reference_is_a_duplicate_naming_the_first_payment(client: Client) -> None:
    first = pay_arrownet(client, "twice")
    with pytest.raises(DuplicateReference) as refused:
        pay_arrownet(client, "twice")
    assert refused.value.error_code == "1013"
    assert (refused.value.existing_id, refused.value.existing_state) == (first.id, "Success")


def test_short_credits_are_insufficient_balance(gateway: Server) -> None:
    poor = new_merchant(gateway, "--test-credits", "100")
    with (
        Client(gateway.base_url, poor.test_token) as client,
        pytest.raises(InsufficientBalance) as refused,
    ):
        pay_arrownet(client, "too-dear")
        assert refused.value.error_code == "1016"
        assert client.balance().credits_available == Decimal(100)


def test_an_isp_refusal_is_isp_refused(client: Client) -> None:
    with pytest.raises(IspRefused) as refused:
        pay_arrownet(client, "refused", username="refuse-user")
    assert refused.value.error_code == "1021"
    assert client.status("refused").state == "Failed"


def test_an_unknown_subscriber_cannot_be_fulfilled(client: Client) -> None:
    with pytest.raises(CannotFulfil) as refused:
        client.details("arrownet", username="nobody-at-all")
    assert (refused.value.error_code, refused.value.details) == ("4000", "Username not found")


def test_a_paid_due_leaves_nothing_to_pay(client: Client) -> None:
    details = client.details("worldlink-v2", username="online_due_payment")
    client.commit("worldlink-v2", reference="due-paid", session_id=details.session_id, amount=4950)
    with pytest.raises(NothingToPay) as refused:
        client.details("worldlink-v2", username="online_due_payment")
    assert refused.value.error_code == "7000"


def test_an_unknown_reference_is_not_found(client: Client) -> None:
    with pytest.raises(UnknownReference) as refused:
        client.status("never-paid")
    assert isinstance(refused.value, NotFound)
    assert refused.value.error_code == "002"


def test_an_unknown_service_and_a_service_not_enabled_are_not_found(gateway: Server) -> None:
    only_arrownet = new_merchant(gateway, "--services", "arrownet")
    with (
        Client(gateway.base_url, only_arrownet.test_token) as client,
        pytest.raises(NotFound) as unknown,
    ):
        client.details("no-such-service", username="x")
        assert (unknown.value.status_code, unknown.value.error_code) == (404, "1008")
        with pytest.raises(NotFound) as not_enabled:
            client.pay_single(
                "eastlink",
                reference="not-mine",
                username="khaltiUser",
                mobile_number="98",
                amount=100,
            )
        assert (not_enabled.value.status_code, not_enabled.value.error_code) == (400, "1008")


def test_a_live_service_without_an_isp_is_unavailable(gateway: Server, merchant: Merchant) -> None:
    with (
        Client(gateway.base_url, merchant.live_token) as live,
        pytest.raises(ServiceUnavailable) as refused,
    ):
        live.details("arrownet", username="Pradhanang")
    assert refused.value.error_code == "1018"


def test_a_merchant_over_its_rate_is_rate_limited_with_its_wait(
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
    with (
        Client(gateway.base_url, merchant.test_token, retries=0) as client,
        pytest.raises(RateLimited) as refused,
    ):
        for _ in range(5):
            client.balance()
    assert (refused.value.status_code, refused.value.error_code) == (429, "1022")
    assert refused.value.retry_after_s >= 1


def test_no_server_is_a_transport_error(gateway: Server) -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}", "TEST:x", retries=1, backoff_s=0.01) as client,
        pytest.raises(TransportError) as failed,
    ):
        client.commit(
            "arrownet", reference="nowhere", username="Pradhanang", amount=1695, duration=1
        )
    assert failed.value.reference == "nowhere"
    assert isinstance(failed.value.__cause__, httpx.ConnectError)


# The codes the gateway cannot be made to answer on purpose, and answers no gateway
# makes: their envelopes as the API documents them, through a mock transport.


def answering(status_code: int, body: object, headers: dict[str, str] | None = None) -> Client:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status_code, text=body, headers=headers)
        return httpx.Response(status_code, json=body, headers=headers)

    return Client("http://gateway", "TEST:t", retries=0, transport=httpx.MockTransport(handler))


def envelope(code: str, error: str, message: str) -> dict[str, object]:
    return {
        "status": False,
        "state": "Error",
        "error_code": code,
        "error": error,
        "message": message,
        "details": "detail",
        "error_data": {},
    }


@pytest.mark.parametrize(
    ("status_code", "code", "kind"),
    [
        (500, "1017", ServerError),
        (400, "1009", PermissionDenied),
        (400, "1019", ServiceUnavailable),
        (400, "9999", ApiError),
    ],
)
def test_every_code_maps_to_its_family(status_code: int, code: str, kind: type[ApiError]) -> None:
    with answering(status_code, envelope(code, "e", "m")) as client, pytest.raises(kind) as refused:
        client.balance()
    assert type(refused.value) is kind
    assert (refused.value.status_code, refused.value.error_code) == (status_code, code)


def test_a_proxys_page_is_an_unreadable_response() -> None:
    with (
        answering(502, "<html>Bad Gateway</html>") as client,
        pytest.raises(UnreadableResponse) as lost,
    ):
        client.balance()
    assert lost.value.status_code == 502 and "Bad Gateway" in lost.value.text
    assert isinstance(lost.value, TransportError)
