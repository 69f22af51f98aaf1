"""The LIVE provider: an ISP billing system spoken to over our ISP protocol (the contract
`isp-sim` serves), one instance per service group.

A payment is pending by default: only an explicit `paid` or `refused` answer is final, and
everything else - a timeout, a dropped connection, a 5xx, an unreadable body - is Unknown,
for the reconciler to settle by asking `status`.

The HTTP client is our own (http1.py): keep-alive connections, a bounded pool handed out
first come, first served in constant time, no redirects. httpx's pool scanned every
connection on each request (27 ms of CPU a request at 1,000 in flight), aiohttp's cost
0.2-0.35 ms of CPU a commit more than this one (bench/README.md).

The daily settlement report is read strictly: a report is compared with our books, so an
answer that is not exactly one (a wrong day, a total that does not add up, a payment twice)
is refused whole (ReportUnreadable), never half trusted."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson
import structlog

from bhuktani import metrics
from bhuktani.clock import nepal_day
from bhuktani.infra.http1 import AnswerTimeout, Http1Client, NoAnswer
from bhuktani.isps import codec, untrusted
from bhuktani.isps.base import (
    Applied,
    Lookup,
    NotFound,
    Order,
    Paid,
    PayResult,
    ProviderUnavailable,
    Refused,
    ReportUnreadable,
    SettlementReport,
    StatusResult,
    Subscriber,
    Unknown,
)
from bhuktani.money import MAX_AMOUNT_PAISA
from bhuktani.store import Tx

# An answer larger than this is not one of ours: read no further, treat it as unreadable.
MAX_ANSWER_BYTES = 256 * 1024
# How much of a raw value the log keeps when one was made safe.
MAX_LOGGED_CHARS = 1000
# A day's settlement report: one ISP's payments of a day, about 130 bytes each. Past these
# it is refused as too large (docs/ISP-PROTOCOL.md). Read once a day, off the payment
# path, so it has its own deadline and its own connection.
MAX_REPORT_PAYMENTS = 200_000
MAX_REPORT_BYTES = 32 * 1024 * 1024
REPORT_TIMEOUT_S = 60.0
# The largest payment id (payments.id is a BIGINT) and an ISO 8601 time's longest text.
MAX_PAYMENT_ID = 2**63 - 1
MAX_TIME_CHARS = 40
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

log = structlog.get_logger()


@dataclass(frozen=True)
class _Answer:
    status_code: int
    body: dict[str, Any] | None  # None unless the body is a JSON object
    oversized: bool = False  # the body was past the size bound and not read


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
        report_timeout_s: float = REPORT_TIMEOUT_S,
        max_report_bytes: int = MAX_REPORT_BYTES,
    ) -> None:
        if not group or "/" in group:
            raise ValueError("group must be a service group slug")
        if settle_window_s < 0:
            raise ValueError("settle_window_s must not be negative")
        self._group = group
        self.settle_window_s = settle_window_s
        # Subscribers live at the ISP, never in our database.
        self.lookup_in: Callable[[Tx, Lookup], Awaitable[Subscriber | None]] | None = None
        headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            # Compressed answers could inflate past MAX_ANSWER_BYTES.
            "Accept-Encoding": "identity",
            "User-Agent": "bhuktani",
        }
        self._client = Http1Client(
            base_url,
            headers,
            connect_timeout_s=connect_timeout_s,
            timeout_s=timeout_s,
            max_connections=max_connections,
            max_answer_bytes=MAX_ANSWER_BYTES,
        )
        self._reports = Http1Client(
            base_url,
            headers,
            connect_timeout_s=connect_timeout_s,
            timeout_s=report_timeout_s,
            max_connections=1,
            max_answer_bytes=max_report_bytes,
        )

    @property
    def waiting(self) -> int:
        """Calls waiting for a connection to this service group's ISPs now."""
        return self._client.waiting

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._reports.aclose()

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

    async def settlement(self, isp: str, day: date) -> SettlementReport:
        path = f"{self._service(isp)}/settlements/{day.isoformat()}"
        try:
            answer = await self._exchange(isp, "settlement", "GET", path, client=self._reports)
        except _NoAnswer as exc:
            raise ProviderUnavailable(str(exc)) from None
        if answer.status_code >= 500:
            raise ProviderUnavailable(f"the ISP answered the report with {_describe(answer)}")
        if answer.status_code != 200 or answer.body is None:
            raise ReportUnreadable(f"the ISP answered the report with {_describe(answer)}")
        return _report(answer.body, isp, day)

    def _service(self, isp: str) -> str:
        return f"/{_segment(self._group)}/{_segment(isp)}"

    async def _exchange(
        self,
        isp: str,
        call: str,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        *,
        client: Http1Client | None = None,
    ) -> _Answer:
        """One request and its answer, read within the deadline and a size limit, and timed
        (metrics.ISP_HTTP_SECONDS)."""
        body = None if payload is None else orjson.dumps(payload)
        started = time.perf_counter()
        outcome = "error"  # anything the handlers below do not name
        try:
            status_code, raw = await (client or self._client).request(
                method, path, body, "application/json"
            )
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
        return _Answer(status_code, _json_object(raw), oversized=raw is None)


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
    if answer.oversized:
        readable = "a body past the size bound"
    else:
        readable = "a JSON body" if answer.body is not None else "an unreadable body"
    return f"HTTP {answer.status_code} and {readable}"


# The daily settlement report, read strictly.


def _report(body: dict[str, Any], isp: str, day: date) -> SettlementReport:
    """The report, or ReportUnreadable naming the first thing wrong with it."""
    where = f"the report of {isp} for {day.isoformat()}"
    if body.get("date") != day.isoformat() or body.get("isp") != isp:
        raise ReportUnreadable(f"{where} names another day or ISP")
    listed = body.get("payments")
    if not isinstance(listed, list):
        raise ReportUnreadable(f"{where} has no list of payments")
    if len(listed) > MAX_REPORT_PAYMENTS:
        raise ReportUnreadable(f"{where} lists more than {MAX_REPORT_PAYMENTS} payments")
    payments = tuple(
        _applied(item, f"{where}, payments[{i}]", day) for i, item in enumerate(listed)
    )
    if len({p.payment_id for p in payments}) != len(payments):
        raise ReportUnreadable(f"{where} lists a payment twice")
    count, total = body.get("count"), body.get("total_paisa")
    if not _whole(count) or count != len(payments):
        raise ReportUnreadable(f"{where}: count is not the number of payments listed")
    report = SettlementReport(isp, day, payments)
    if not _whole(total) or total != report.total_paisa:
        raise ReportUnreadable(f"{where}: total_paisa is not the sum of the payments")
    return report


def _applied(item: Any, where: str, day: date) -> Applied:
    if not isinstance(item, dict):
        raise ReportUnreadable(f"{where} is not an object")
    payment_id = _up_to(item.get("payment_id"), MAX_PAYMENT_ID)
    if payment_id is None:
        raise ReportUnreadable(f"{where}: payment_id is not a payment id")
    amount_paisa = _up_to(item.get("amount_paisa"), MAX_AMOUNT_PAISA)
    if amount_paisa is None:
        raise ReportUnreadable(f"{where}: amount_paisa is not a payment's amount in paisa")
    receipt = item.get("receipt")
    if not isinstance(receipt, str) or not receipt:
        raise ReportUnreadable(f"{where}: receipt is not a text")
    applied_ms = _time_ms(item.get("applied_at"))
    if applied_ms is None or nepal_day(applied_ms) != day:
        raise ReportUnreadable(f"{where}: applied_at is not a time of that day")
    return Applied(payment_id, amount_paisa, untrusted.receipt(receipt), applied_ms)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _up_to(value: Any, most: int) -> int | None:
    """The value if it is a whole number from 1 to `most`, else None."""
    return value if isinstance(value, int) and _whole(value) and 0 < value <= most else None


def _time_ms(value: Any) -> int | None:
    """An ISO 8601 time with its offset, in milliseconds since the epoch."""
    if not isinstance(value, str) or len(value) > MAX_TIME_CHARS:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return (moment - _EPOCH) // timedelta(milliseconds=1)


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
