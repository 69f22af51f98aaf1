"""AsyncClient: the same calls, refusals, retries and waiting as Client, awaited."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from bhuktani_client import (
    AsyncClient,
    DuplicateReference,
    IspRefused,
    Payment,
    State,
    UnknownReference,
)

from tests.sdk.conftest import Merchant, today
from tests.support import Server

COMMIT = "/api/servicegroup/commit/arrownet/"


class LossyAsync(httpx.AsyncBaseTransport):
    """The first `lose` answers to `path` are read and thrown away as a read timeout."""

    def __init__(self, path: str, lose: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.path = path
        self.lose = lose
        self.sent: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != self.path:
            return await self.inner.handle_async_request(request)
        self.sent.append(await request.aread())
        response = await self.inner.handle_async_request(request)
        if len(self.sent) <= self.lose:
            await response.aread()
            await response.aclose()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def pay(client: AsyncClient, reference: str, username: str = "Pradhanang") -> Payment:
    await client.details("arrownet", username=username)
    return await client.commit(
        "arrownet", reference=reference, username=username, amount=Decimal("1695.00"), duration=1
    )


async def test_pay_look_up_and_walk(gateway: Server, merchant: Merchant) -> None:
    async with AsyncClient(gateway.base_url, merchant.test_token) as client:
        before = (await client.balance()).credits_available
        for reference in ("async-1", "async-2", "async-3"):
            await pay(client, reference)
        assert (await client.balance()).credits_available == before - 3 * Decimal("1695.00")
        assert (await client.status("async-2")).state is State.SUCCESS
        entries = await client.bulk_status(["async-1", "nope"])
        assert [e.found for e in entries] == [True, False]
        walked = [t.reference async for t in client.iter_transactions(limit=2)]
        assert walked == ["async-3", "async-2", "async-1"]
        statement = await client.statement(today())
        assert statement.closing == await client.credits_by_date(today())
        with pytest.raises(DuplicateReference):
            await pay(client, "async-1")
        with pytest.raises(IspRefused):
            await pay(client, "async-refused", username="refuse-user")
        with pytest.raises(UnknownReference):
            await client.status("never")


async def test_a_lost_answer_is_paid_once_and_answered(gateway: Server, merchant: Merchant) -> None:
    lossy = LossyAsync(COMMIT, lose=1)
    async with AsyncClient(
        gateway.base_url, merchant.test_token, backoff_s=0.05, transport=lossy
    ) as client:
        before = (await client.balance()).credits_available
        await client.details("arrownet", username="Pradhanang")
        paid = await client.commit(
            "arrownet", reference="async-lost", username="Pradhanang", amount="1695.00", duration=1
        )
        assert paid.recovered and paid.state is State.SUCCESS
        assert len(lossy.sent) == 2 and lossy.sent[0] == lossy.sent[1]
        assert (await client.balance()).credits_available == before - Decimal("1695.00")


async def test_wait_for_a_processing_payment(gateway: Server, merchant: Merchant) -> None:
    async with AsyncClient(gateway.base_url, merchant.test_token) as client:
        await client.details("arrownet", username="flaky-user")
        paid = await client.commit(
            "arrownet", reference="async-slow", username="flaky-user", amount=1695, duration=1
        )
        assert paid.state is State.PROCESSING
        final = await client.wait("async-slow", timeout_s=30, first_poll_s=0.1)
        assert final.state is State.SUCCESS
