"""The LIVE provider: an ISP billing system spoken to over our ISP protocol (the contract
`isp-sim` serves), one instance per service group.

A payment is pending by default: only an explicit `paid` or `refused` answer is final, and
everything else - a timeout, a dropped connection, a 5xx, an unreadable body - is Unknown,
for the reconciler to settle by asking `status`.

The HTTP client is our own (http1.py): keep-alive connections, a bounded pool handed out
first come, first served in constant time, no redirects. httpx's pool scanned every
connection on each request (27 ms of CPU a request at 1,000 in flight), aiohttp's cost
0.2-0.35 ms of CPU a commit more than this one (bench/README.md)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
import structlog

from bhuktani import metrics
from bhuktani.infra.http1 import AnswerTimeout, Http1Client, NoAnswer
from bhuktani.isps import codec, untrusted
from bhuktani.isps.base import (
    Lookup,
    NotFound,
    Order,
    Paid,
    PayResult,
    ProviderUnavailable,
    Refused,
    StatusResult,
    Subscriber,
    Unknown,
)
from bhuktani.store import Tx

# An answer larger than this is not one of ours: read no further, treat it as unreadable.
MAX_ANSWER_BYTES = 256 * 1024
# How much of a raw value the log keeps when one was made safe.
MAX_LOGGED_CHARS = 1000

log = structlog.get_logger()


@dataclass(frozen=True)
class _Answer:
    status_code: int
    body: dict[str, Any] | None  # None unless the body is a JSON object


class _NoAnswer(Exception):
    """The ISP gave no HTTP answer; the text names the fault, never the request."""


class IspHttpProvider:
    def __init__(
        self,
        group: str,
        base_url: str,
        api_key: str,
        connect_timeout_s: float,
        timeout_s: float,
        max_connections: int,
        settle_window_s: float,
    ) -> None:
        if not group or "/" in group:
            raise ValueError("group must be a service group slug")
        if settle_window_s < 0:
            raise ValueError("settle_window_s must not be negative")
        self._group = group
        self.settle_window_s = settle_window_s
        # Subscribers live at the ISP, never in our database.
        self.lookup_in: Callable[[Tx, Lookup], Awaitable[Subscriber | None]] | None = None
        self._client = Http1Client(
            base_url,
            {
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                # Compressed answers could inflate past MAX_ANSWER_BYTES.
                "Accept-Encoding": "identity",
                "User-Agent": "bhuktani",
            },
            connect_timeout_s=connect_timeout_s,
            timeout_s=timeout_s,
            max_connections=max_connections,
            max_answer_bytes=MAX_ANSWER_BYTES,
        )

    @property
    def waiting(self) -> int:
        """Calls waiting for a connection to this service group's ISPs now."""
        return self._client.waiting

    async def aclose(self) -> None:
        await self._client.aclose()

    async def lookup(self, query: Lookup) -> Subscriber | None:
        path = f"{self._service(query.isp)}/subscribers/{_segment(query.username)}"
        try:
            answer = await self._exchange(query.isp, "lookup", "GET", path)
        except _NoAnswer as exc:
            raise ProviderUnavailable(str(exc)) from None
        if answer.status_code == 404 and _is_not_found(answer.body):
            return None
        if answer.status_code != 200 or answer.body is None:
            raise ProviderUnavailable(f"the ISP answered the look-up with {_describe(answer)}")
        try:
            found = untrusted.checked(codec.subscriber_from_json(answer.body))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("isp_subscriber_unreadable", isp=query.isp, why=_logged(str(exc)))
            raise ProviderUnavailable("the ISP's subscriber could not be read") from None
        if found.dropped:
            log.warning("isp_offer_made_safe", isp=query.isp, dropped=list(found.dropped))
        return found.subscriber

    async def pay(self, order: Order) -> PayResult:
        try:
            answer = await self._exchange(
                order.isp, "pay", "POST", f"{self._service(order.isp)}/payments", _json(order)
            )
        except _NoAnswer as exc:
            return Unknown(str(exc))
        return _pay_result(answer, order.payment_id)

    async def status(self, order: Order) -> StatusResult:
        path = f"{self._service(order.isp)}/payments/{order.payment_id}"
        try:
            answer = await self._exchange(order.isp, "status", "GET", path)
        except _NoAnswer as exc:
            return Unknown(str(exc))
        return _status_result(answer, order.payment_id)

    def _service(self, isp: str) -> str:
        return f"/{_segment(self._group)}/{_segment(isp)}"

    async def _exchange(
        self, isp: str, call: str, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> _Answer:
        """One request and its answer, read within the deadline and a size limit, and timed
        (metrics.ISP_HTTP_SECONDS)."""
        body = None if payload is None else orjson.dumps(payload)
        started = time.perf_counter()
        outcome = "error"  # anything the handlers below do not name
        try:
            status_code, raw = await self._client.request(method, path, body, "application/json")
            outcome = f"{status_code // 100}xx"
        except AnswerTimeout as exc:
            outcome = "timeout"
            raise _NoAnswer(f"the ISP did not answer in time ({exc})") from None
        except NoAnswer as exc:
            outcome = "no_answer"
            raise _NoAnswer(f"no answer from the ISP ({exc})") from None
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            metrics.isp_exchange(self._group, isp, call, outcome).observe(
                time.perf_counter() - started
            )
        return _Answer(status_code, _json_object(raw))


# The ISP's answers, mapped to ours.


def _pay_result(answer: _Answer, payment_id: int) -> PayResult:
    body = answer.body
    if answer.status_code == 200 and body is not None and body.get("status") == "paid":
        return _paid(body, payment_id)
    if answer.status_code == 422 and body is not None and body.get("status") == "refused":
        return _refused(body)
    return _unexpected(answer, "the payment")


def _unexpected(answer: _Answer, what: str) -> Unknown:
    """An answer that says nothing we can read. A 5xx is the ISP failing, which passes; any
    other is an answer we cannot read, which waiting does not cure."""
    return Unknown(
        f"the ISP answered {what} with {_describe(answer)}",
        unreadable=answer.status_code < 500,
    )


def _status_result(answer: _Answer, payment_id: int) -> StatusResult:
    body = answer.body
    if answer.status_code == 404 and _is_not_found(body):
        return NotFound()
    if answer.status_code == 200 and body is not None and body.get("status") == "paid":
        return _paid(body, payment_id)
    if answer.status_code == 200 and body is not None and body.get("status") == "refused":
        return _refused(body)
    if answer.status_code == 200 and body is not None and body.get("status") == "pending":
        return Unknown("the ISP is still processing the payment")
    return _unexpected(answer, "the status question")


def _paid(body: dict[str, Any], payment_id: int) -> Paid | Unknown:
    receipt = body.get("receipt")
    if not isinstance(receipt, str) or not receipt:
        return Unknown("the ISP said paid without a receipt", unreadable=True)
    echoed = body.get("payment_id", payment_id)
    if echoed != payment_id or isinstance(echoed, bool):
        # A paid answer for another payment says nothing about this one.
        return Unknown("the ISP answered for another payment", unreadable=True)
    # Paid is explicit, and stays so: only the receipt is made safe to keep and show.
    safe = untrusted.receipt(receipt)
    if safe != receipt:
        log.warning(
            "isp_receipt_made_safe",
            payment_id=payment_id,
            raw=_logged(repr(receipt[:MAX_LOGGED_CHARS])),
            receipt=safe,
        )
    return Paid(safe)


def _refused(body: dict[str, Any]) -> Refused:
    reason = body.get("reason")
    field = body.get("field")
    safe_reason = untrusted.reason(reason) if isinstance(reason, str) else ""
    if isinstance(reason, str) and untrusted.shown(reason, len(reason)) != reason:
        log.warning(
            "isp_reason_made_safe", raw=_logged(repr(reason[:MAX_LOGGED_CHARS])), reason=safe_reason
        )
    return Refused(
        reason=safe_reason if safe_reason.strip() else "Refused by the ISP",
        field=untrusted.field(field) if isinstance(field, str) else None,
    )


def _is_not_found(body: dict[str, Any] | None) -> bool:
    return body is not None and body.get("status") == "not_found"


def _describe(answer: _Answer) -> str:
    readable = "a JSON body" if answer.body is not None else "an unreadable body"
    return f"HTTP {answer.status_code} and {readable}"


def _logged(text: str) -> str:
    return untrusted.cut(text, MAX_LOGGED_CHARS)


def _segment(value: str) -> str:
    return quote(value, safe="")


def _json(order: Order) -> dict[str, Any]:
    return {
        "payment_id": order.payment_id,
        "username": order.username,
        "package_code": order.package_code,
        "package_title": order.package_title,
        "duration_code": order.duration_code,
        "days": order.days,
        "amount_paisa": order.amount_paisa,
    }


def _json_object(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
