"""verify_callback on the callbacks the gateway really delivers (a payment's DLR, a
dispute's event, both signatures after a rotation), refusing a tampered body, an old
timestamp and a wrong secret; and signing as the standardwebhooks package does."""

from __future__ import annotations

import asyncio
import base64
import secrets
from datetime import UTC, datetime

import pytest
from bhuktani_client import AsyncClient, InvalidSignature, State, verify_callback
from bhuktani_client.webhooks import sign
from standardwebhooks.webhooks import Webhook

from tests.receiver import Receiver, receiving
from tests.sdk.conftest import new_merchant
from tests.support import Server, cli, cli_json


async def delivered(receiver: Receiver, count: int, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while len(receiver.received) < count:
            await asyncio.sleep(0.05)


async def test_a_delivered_callback_verifies_and_a_forged_one_does_not(gateway: Server) -> None:
    async with receiving() as receiver:
        merchant = new_merchant(gateway, "--callback-url", receiver.url)
        other = new_merchant(gateway)
        async with AsyncClient(gateway.base_url, merchant.test_token) as client:
            queued = await client.pay_single(
                "eastlink",
                reference="called-back",
                username="khaltiUser",
                mobile_number="9818766122",
                amount=100,
            )
            assert queued.state is State.QUEUED
            await delivered(receiver, 1)
        dlr = receiver.received[0]

    callback = verify_callback(merchant.test_secret, dlr.body, dlr.headers)
    assert callback.type == "dlr" and callback.webhook_id == dlr.headers["webhook-id"]
    assert callback.data == {
        "reference": "called-back",
        "amount": "100.00",
        "status": "Success",
        "detail": callback.data["detail"],
        "response_id": str(queued.id),
        "env": "test",
    }
    # The standardwebhooks package reads the same callback the same way.
    Webhook(merchant.test_secret).verify(dlr.body, dlr.headers, json_parse=False)

    tampered = dlr.body.replace(b"100.00", b"900.00")
    assert tampered != dlr.body
    with pytest.raises(InvalidSignature, match="no signature"):
        verify_callback(merchant.test_secret, tampered, dlr.headers)
    with pytest.raises(InvalidSignature, match="5 minutes"):
        verify_callback(merchant.test_secret, dlr.body, dlr.headers, now_s=callback.timestamp + 301)
    with pytest.raises(InvalidSignature, match="no signature"):
        verify_callback(other.test_secret, dlr.body, dlr.headers)
    unsigned = {k: v for k, v in dlr.headers.items() if k != "webhook-signature"}
    with pytest.raises(InvalidSignature, match="webhook-signature"):
        verify_callback(merchant.test_secret, dlr.body, unsigned)


async def test_an_event_after_a_rotation_verifies_with_either_secret(gateway: Server) -> None:
    async with receiving() as receiver:
        merchant = new_merchant(gateway, "--callback-url", receiver.url)
        async with AsyncClient(gateway.base_url, merchant.test_token) as client:
            await client.details("arrownet", username="Pradhanang")
            await client.commit(
                "arrownet",
                reference="to-dispute",
                username="Pradhanang",
                amount="1695.00",
                duration=1,
            )
            dispute = await client.raise_dispute("to-dispute", "Not applied")
            rotated = str(
                cli_json(
                    gateway.db_url,
                    "merchant",
                    "rotate-secret",
                    str(merchant.merchant_id),
                    "--env",
                    "test",
                )["secret"]
            )
            cli(
                gateway.db_url,
                "disputes",
                "resolve",
                str(dispute.id),
                "--reject",
                "--note",
                "Applied",
            )
            await delivered(receiver, 1)
        event = receiver.received[0]

    assert len(event.headers["webhook-signature"].split()) == 2
    for secret in (merchant.test_secret, rotated):
        verified = verify_callback(secret, event.body, event.headers)
        assert verified.type == "dispute.resolved"
        assert verified.data["dispute"]["id"] == dispute.id
        assert verified.data["dispute"]["status"] == "rejected"


def test_signatures_are_the_standardwebhooks_packages() -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    timestamp = int(datetime.now(UTC).timestamp())
    body = b'{"type": "balance.low", "data": {"credits_available": 4915.0}}'
    theirs = Webhook(secret).sign("msg_1", datetime.fromtimestamp(timestamp, UTC), body)
    assert sign(secret, "msg_1", timestamp, body) == theirs
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{base64.b64encode(b'x' * 32).decode()} {theirs}",
        "content-type": "application/json",
    }
    verified = verify_callback(secret, body, headers)
    assert (verified.type, verified.data) == ("balance.low", {"credits_available": 4915.0})
    # A secret before Standard Webhooks: its bytes are the key.
    old = b"whsec_an-old-urlsafe-secret"
    assert sign(old, "msg_1", timestamp, body) == Webhook(old).sign(
        "msg_1", datetime.fromtimestamp(timestamp, UTC), body
    )
