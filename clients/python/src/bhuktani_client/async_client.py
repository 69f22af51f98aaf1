"""The asyncio client: Client's calls, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal, TypeVar, cast, overload

import httpx

from bhuktani_client import _calls, models
from bhuktani_client._base import (
    DEFAULT_TIMEOUT_S,
    MAX_PAGES,
    details_reference,
    settings,
    wait_delays,
)
from bhuktani_client._calls import Call, Kind
from bhuktani_client._retry import Attempts
from bhuktani_client.errors import DuplicateReference, TooManyPages, WaitTimeout

T = TypeVar("T")
Amount = Decimal | int | str


class AsyncClient:
    """The gateway's API over httpx, for asyncio; the same calls as Client. `base_url` is the gateway (`http://127.0.0.1:8000`);
    `token` a merchant's (`TEST:...` for the sandbox). `retries` bounds the attempts after
    the first (lost answers, 1022), `backoff_s` is the first wait between them.
    `transport` replaces httpx's (tests, proxies)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = 2,
        backoff_s: float = 0.5,
        max_retry_after_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings(
            base_url,
            token,
            timeout=timeout,
            retries=retries,
            backoff_s=backoff_s,
            max_retry_after_s=max_retry_after_s,
        )
        self._http = httpx.AsyncClient(
            base_url=self._settings.base_url,
            headers=self._settings.headers,
            timeout=self._settings.timeout,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"AsyncClient({self._settings.base_url!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call[T]) -> T:
        attempts = Attempts(call, self._settings.policy)
        while True:
            content = None if call.body is None else _calls.encode(call.body)
            headers = None if content is None else {"Content-Type": "application/json"}
            request = self._http.build_request(
                call.method, call.path, params=call.params, content=content, headers=headers
            )
            try:
                response = await self._http.send(request)
            except httpx.TransportError as error:
                wait_s = attempts.after_error(error)
            else:
                answer = attempts.after_response(response)
                if answer is None:
                    return await self._answer(call, attempts, response)
                wait_s = answer
            await asyncio.sleep(wait_s)

    async def _answer(self, call: Call[T], attempts: Attempts, response: httpx.Response) -> T:
        if response.is_success:
            return call.read(response)
        error = _calls.refusal(response, call.reference)
        if (
            isinstance(error, DuplicateReference)
            and call.kind is Kind.PAYMENT
            and attempts.answer_lost
            and call.reference is not None
        ):
            # Our own earlier attempt took it: read back what it became.
            return cast(T, models.Payment.recovered_from(await self.status(call.reference)))
        raise error

    # Paying.

    async def details(self, group: str, **fields: Any) -> models.Details:
        """What a subscriber can pay: `POST /api/servicegroup/details/<group>/` with the
        group's fields (`username`, `service_slug`, ...). A reference is made up when
        `reference` is not given; it is `Details.reference`."""
        reference = str(fields.pop("reference", None) or details_reference())
        return await self._send(_calls.details(group, reference, fields))

    async def commit(self, group: str, *, reference: str, **fields: Any) -> models.Payment:
        """Pay: `POST /api/servicegroup/commit/<group>/`. `reference` is your own id of
        the payment (an order id), unique per environment: sent again with it, the gateway
        never pays twice. Amounts may be Decimal, int or str."""
        return await self._send(_calls.commit(group, reference, fields))

    async def pay_single(self, slug: str, *, reference: str, **fields: Any) -> models.Payment:
        """A single-step payment: `POST /api/use/<slug>/`, answered Queued."""
        return await self._send(_calls.pay_single(slug, reference, fields))

    # Looking up.

    async def status(self, reference: str) -> models.PaymentStatus:
        return await self._send(_calls.status(reference))

    async def bulk_status(self, references: list[str]) -> list[models.BulkEntry]:
        """Every reference's status, in order; 100 a request."""
        entries: list[models.BulkEntry] = []
        for start in range(0, len(references), _calls.BULK_MAX):
            chunk = references[start : start + _calls.BULK_MAX]
            found: list[models.BulkEntry] = await self._send(_calls.bulk_status(chunk))
            entries.extend(found)
        return entries

    async def wait(
        self,
        reference: str,
        *,
        timeout_s: float = 90.0,
        first_poll_s: float = 0.5,
        max_poll_s: float = 5.0,
        max_polls: int = 100,
    ) -> models.PaymentStatus:
        """Look the payment up until it is final (Success or Failed), waiting longer each
        time; raises WaitTimeout with the last state read after timeout_s or max_polls."""
        deadline = time.monotonic() + timeout_s
        last: models.PaymentStatus | None = None
        polls = 0
        for delay_s in wait_delays(first_poll_s, max_poll_s, max_polls):
            last = await self.status(reference)
            polls += 1
            if last.is_final:
                return last
            left_s = deadline - time.monotonic()
            if left_s <= 0 or polls == max_polls:
                break
            await asyncio.sleep(min(delay_s, left_s))
        raise WaitTimeout(reference, None if last is None else last.state.value, polls)

    async def balance(self) -> models.Balance:
        return await self._send(_calls.balance())

    # The merchant's money.

    @overload
    async def statement(
        self, day: date | str, *, csv: Literal[False] = False
    ) -> models.Statement: ...

    @overload
    async def statement(self, day: date | str, *, csv: Literal[True]) -> str: ...

    async def statement(self, day: date | str, *, csv: bool = False) -> models.Statement | str:
        """A Nepal day's statement; `csv=True` answers the CSV text."""
        if csv:
            return await self._send(_calls.statement_csv(day))
        return await self._send(_calls.statement(day))

    async def credits_by_date(self, day: date | str) -> Decimal:
        """The credits available at the end of a Nepal day."""
        return await self._send(_calls.credits_by_date(day))

    async def transactions(
        self,
        *,
        from_date: date | str | None = None,
        to_date: date | str | None = None,
        state: str | None = None,
        service: str | None = None,
        reference: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> models.TransactionPage:
        """One page of payments, newest first; pass `next_cursor` for the next."""
        return await self._send(
            _calls.transactions(
                from_date=from_date,
                to_date=to_date,
                state=state,
                service=service,
                reference=reference,
                limit=limit,
                cursor=cursor,
            )
        )

    async def iter_transactions(
        self,
        *,
        from_date: date | str | None = None,
        to_date: date | str | None = None,
        state: str | None = None,
        service: str | None = None,
        reference: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[models.Transaction]:
        """Every payment the filters match, page after page."""
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await self.transactions(
                from_date=from_date,
                to_date=to_date,
                state=state,
                service=service,
                reference=reference,
                limit=limit,
                cursor=cursor,
            )
            for found in page.results:
                yield found
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
        raise TooManyPages(MAX_PAGES)

    async def service_charge(self, service_slug: str, amount: Amount) -> models.ServiceCharge:
        return await self._send(_calls.service_charge(service_slug, amount))

    async def credit_request(self, credit: Amount) -> models.CreditRequest:
        """Ask the operator for credits in the token's environment."""
        return await self._send(_calls.credit_request(credit))

    async def raise_dispute(self, reference: str, reason: str) -> models.Dispute:
        return await self._send(_calls.raise_dispute(reference, reason))

    async def disputes(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> models.DisputePage:
        return await self._send(_calls.disputes(status=status, limit=limit, cursor=cursor))

    async def iter_disputes(
        self, *, status: str | None = None, limit: int | None = None
    ) -> AsyncIterator[models.Dispute]:
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await self.disputes(status=status, limit=limit, cursor=cursor)
            for found in page.results:
                yield found
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
        raise TooManyPages(MAX_PAGES)
