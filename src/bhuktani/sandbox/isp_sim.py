"""`isp-sim`: the simulated ISPs of the catalog served over real HTTP, so that the LIVE
adapters, their timeouts and their handling of dropped connections are tested on one machine.

Plain asyncio rather than ASGI, because the scenarios must cut a connection without an
answer (`flaky-user`, `lost-user`), which an ASGI server never lets an app do. The HTTP/1.1
subset is what the adapters send: a request line, headers, a Content-Length body and
keep-alive. Every read is bounded in size and time.

It is also a fault injector: each request of the protocol draws a fate (faults.py) from a
seeded generator. What each fate does to the first request for a payment_id:

- refuse: 422, recorded as refused; a status question or a repeat answers that refusal.
- error_5xx: 503 and nothing decided, so a repeat may still apply the payment.
- garbage: decided as usual (applied, unless the ISP's own rules refuse it), then a 200
  whose body is the real answer cut in half: the ISP did it, but the answer that says so
  is unreadable. The nastiest case, and a sloppy parser would find "paid" in it.
- drop_before: the connection drops and nothing is decided.
- drop_after: decided as usual, then the connection drops.
- hostile: decided as usual; if applied, its receipt carries a NUL, control characters and
  a bidirectional override (HOSTILE_RECEIPT), in the answer and in every status answer:
  an explicit paid whose receipt the gateway must make safe, not store as it is.

The latency is spent after the ISP decides and before it answers, so a timeout never
means "not applied". A repeat of a payment_id already decided draws as a status question
or a look-up does: latency, 503, garbage or a drop, never a new decision, so no fault
applies a payment twice or changes a recorded outcome. The catalog's scenario users keep
their own behaviour and draw nothing, so the sandbox's scenarios stay deterministic; a
status question about a payment the ISP never saw cannot tell whose it was, so it draws.
/healthz and the /_sim routes draw nothing: they are the harness's view of the truth.

`/_sim/faults` shows (GET) and replaces (PUT) the settings, restarting the draws from the
seed given; `/_sim/stats` counts the fates drawn since; `/_sim/applied` lists every payment
the ISP applied, to compare with the gateway's books.

`/{group}/{isp}/settlements/{date}` is the ISP's daily report of what it applied
(docs/ISP-PROTOCOL.md), from the same store: each payment is dated when it was applied, by
the simulator's clock (a test sets it to put payments on a day of its own). The report is
the ISP's back office, not the payment path, so it draws no fault: a drill makes it
unreachable by stopping the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import json
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any
from urllib.parse import unquote

from bhuktani.clock import DAY_MS, NEPAL, day_start_ms, now_ms
from bhuktani.isps import codec
from bhuktani.isps.base import Order, Subscriber, username_key
from bhuktani.sandbox import catalog
from bhuktani.sandbox.catalog import Behaviour
from bhuktani.sandbox.faults import Draw, Fate, FaultPlan, Faults

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 8 * 1024
MAX_HEADERS = 64
MAX_HEADER_BYTES = 32 * 1024
MAX_BODY_BYTES = 64 * 1024
# Connections waiting to be accepted. asyncio's default (100) drops the SYNs of a gateway
# that opens hundreds of connections at once, and each dropped SYN costs its payment the
# 1 s of the kernel's SYN retry: latency that no ISP setting asked for. The kernel caps
# it at net.core.somaxconn.
LISTEN_BACKLOG = 4096
# Covers a keep-alive connection's idle wait too: a silent client is dropped after it.
REQUEST_TIMEOUT_S = 30.0
MAX_REQUESTS_PER_CONNECTION = 10_000
# Payments are kept in memory; past this the simulator answers 503 rather than grow
# (`--max-payments`: a load test at thousands of payments a second passes it in a minute).
MAX_PAYMENTS = 100_000

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_TARGET = re.compile(r"^/[\x21-\x7e]*$")
_DIGITS = re.compile(r"^[0-9]{1,18}$")
_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_VERSIONS = ("HTTP/1.1", "HTTP/1.0")
FAULT_REFUSAL = "Refused by the ISP (isp-sim fault)"
# What a hostile fate appends to a receipt: a NUL, an ANSI escape, a bidi override.
HOSTILE_RECEIPT = "\x00\x1b[2J\u202e"


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    keep_alive: bool


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any] | bytes  # bytes are sent as they are: a garbled answer
    # Applied before the answer is written: `slow-user` answers late, and so does latency.
    delay_s: float = 0.0


@dataclass(frozen=True)
class Drop:
    """Cut the connection without answering, after a delay."""

    why: str
    delay_s: float = 0.0


@dataclass(frozen=True)
class Record:
    payment_id: int
    group: str
    isp: str
    username: str
    amount_paisa: int
    receipt: str | None  # None when refused
    reason: str = ""
    field: str | None = None
    # When the ISP decided it, by the simulator's clock: the day its report lists it on.
    decided_ms: int = 0


class BadRequest(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class IspSimulator:
    """Subscribers and payments of every simulated ISP, in memory, and the protocol's
    handlers; no sockets, so it is tested directly."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        slow_delay_s: float = 10.0,
        max_payments: int = MAX_PAYMENTS,
        faults: Faults | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        if slow_delay_s < 0:
            raise ValueError("slow_delay_s must not be negative")
        if max_payments < 1:
            raise ValueError("max_payments must be at least 1")
        self._api_key = api_key or None  # an empty key is no key, as the CLI passes it
        self.slow_delay_s = slow_delay_s
        self._max_payments = max_payments
        self._subscribers: dict[tuple[str, str, str], Subscriber] = {}
        # One billing system per group, as one system stands behind all of a group's ISPs.
        self._payments: dict[tuple[str, int], Record] = {}
        # Random start so that receipts of two runs against one gateway rarely collide.
        self._receipts = itertools.count(1_000_000_000 + secrets.randbelow(1_000_000_000))
        # Open connections, so that stop() can end keep-alive ones that would outlive it.
        self.connections: set[asyncio.Task[Any]] = set()
        self.stopping = False
        self.plan = FaultPlan(faults or Faults())
        # Milliseconds since the epoch; what the daily report dates each payment by.
        self.clock = clock

    @property
    def faults(self) -> Faults:
        return self.plan.faults

    def set_faults(self, faults: Faults) -> None:
        """New settings, and the draws restarted from their seed."""
        self.plan = FaultPlan(faults)
        log.info("isp-sim faults: %s", json.dumps(faults.to_json()))

    def handle(self, request: Request) -> Reply | Drop:
        try:
            return self._route(request)
        except BadRequest as exc:
            return Reply(exc.status, {"error": "bad_request", "detail": exc.detail})

    def _route(self, request: Request) -> Reply | Drop:
        segments = _segments(request.target)
        if request.method == "GET" and segments == ["healthz"]:
            return Reply(200, {"status": "ok"})
        if not self._authorised(request.headers.get("authorization", "")):
            return Reply(401, {"error": "unauthorized"})
        match request.method, segments:
            case "GET", ["_sim", "applied"]:
                return self.applied()
            case "GET", ["_sim", "faults"]:
                return Reply(200, self.faults.to_json())
            case "PUT", ["_sim", "faults"]:
                self.set_faults(_parse_faults(request.body))
                return Reply(200, self.faults.to_json())
            case "GET", ["_sim", "stats"]:
                return Reply(200, self.plan.stats())
            case "GET", [group, isp, "subscribers", username] if catalog.known(group, isp):
                if _is_scenario(username):
                    return self.lookup(group, isp, username)
                return self._query(lambda: self.lookup(group, isp, username), "look-up")
            case "POST", [group, isp, "payments"] if catalog.known(group, isp):
                return self.pay(group, isp, _parse_order(isp, request.body))
            case "GET", [group, isp, "payments", payment_id] if catalog.known(group, isp):
                return self._status(group, isp, _parse_id(payment_id))
            case "GET", [group, isp, "settlements", day] if catalog.known(group, isp):
                return self.settlement(group, isp, _parse_day(day))
        # Not {"status": "not_found"}: a wrong URL must not read as "no such subscriber".
        return Reply(404, {"error": "unknown_route"})

    def _authorised(self, header: str) -> bool:
        if self._api_key is None:
            return True
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return secrets.compare_digest(key.strip().encode(), self._api_key.encode())

    def current(self, group: str, isp: str, username: str) -> Subscriber | None:
        stored = self._subscribers.get((group, isp, username_key(username)))
        return stored if stored is not None else catalog.template(isp, username)

    def lookup(self, group: str, isp: str, username: str) -> Reply:
        subscriber = self.current(group, isp, username)
        if subscriber is None:
            return Reply(404, {"status": "not_found"})
        return Reply(200, codec.subscriber_to_json(subscriber))

    def pay(self, group: str, isp: str, order: Order) -> Reply | Drop:
        if _is_scenario(order.username):
            return self._pay_scenario(group, isp, order)
        existing = self._payments.get((group, order.payment_id))
        if existing is not None:
            return self._query(lambda: _decided(existing), f"repeat of payment {order.payment_id}")
        draw = self.plan.payment()
        refusal = (FAULT_REFUSAL, None) if draw.fate is Fate.REFUSE else None
        hostile = draw.fate is Fate.HOSTILE

        def settle() -> Reply:
            record = self._settle(group, isp, order, refusal, hostile=hostile)
            return (
                Reply(503, {"error": "too_many_payments"}) if record is None else _decided(record)
            )

        return _disturb(draw, settle, f"payment {order.payment_id}")

    def _status(self, group: str, isp: str, payment_id: int) -> Reply | Drop:
        record = self._payments.get((group, payment_id))
        if record is not None and _is_scenario(record.username):
            return self.payment_status(group, isp, payment_id)
        return self._query(
            lambda: self.payment_status(group, isp, payment_id), f"status of payment {payment_id}"
        )

    def _query(self, answer: Callable[[], Reply], what: str) -> Reply | Drop:
        return _disturb(self.plan.query(), answer, what)

    def _pay_scenario(self, group: str, isp: str, order: Order) -> Reply | Drop:
        behaviour = catalog.behaviour(order.username)
        if behaviour is Behaviour.LOST:
            return Drop("lost-user: the payment never reaches the ISP")
        record = self._settle(group, isp, order)
        if record is None:
            return Reply(503, {"error": "too_many_payments"})
        if record.receipt is None:
            return Reply(422, _refused_json(record))
        if behaviour is Behaviour.FLAKY:
            return Drop("flaky-user: applied, then the connection drops")
        delay_s = self.slow_delay_s if behaviour is Behaviour.SLOW else 0.0
        return Reply(200, _paid_json(record), delay_s=delay_s)

    def payment_status(self, group: str, isp: str, payment_id: int) -> Reply:
        record = self._payments.get((group, payment_id))
        if record is None or record.isp != isp:
            return Reply(404, {"status": "not_found"})
        if record.receipt is None:
            return Reply(200, _refused_json(record))
        return Reply(200, _paid_json(record))

    def applied(self) -> Reply:
        payments = [
            {
                "payment_id": r.payment_id,
                "group": r.group,
                "isp": r.isp,
                "username": r.username,
                "amount_paisa": r.amount_paisa,
                "receipt": r.receipt,
            }
            for r in self._payments.values()
            if r.receipt is not None
        ]
        return Reply(200, {"payments": payments})

    def settlement(self, group: str, isp: str, day: date) -> Reply:
        """The ISP's daily report: the payments of this ISP applied on the day (Nepal
        time), in the order they were applied."""
        start_ms = day_start_ms(day)
        applied = sorted(
            (
                r
                for r in self._payments.values()
                if r.group == group
                and r.isp == isp
                and r.receipt is not None
                and start_ms <= r.decided_ms < start_ms + DAY_MS
            ),
            key=lambda r: (r.decided_ms, r.payment_id),
        )
        payments = [
            {
                "payment_id": r.payment_id,
                "amount_paisa": r.amount_paisa,
                "receipt": r.receipt,
                "applied_at": applied_at(r.decided_ms),
            }
            for r in applied
        ]
        return Reply(
            200,
            {
                "date": day.isoformat(),
                "isp": isp,
                "payments": payments,
                "count": len(payments),
                "total_paisa": sum(r.amount_paisa for r in applied),
            },
        )

    def _settle(
        self,
        group: str,
        isp: str,
        order: Order,
        forced: tuple[str, str | None] | None = None,
        *,
        hostile: bool = False,
    ) -> Record | None:
        """The payment's one outcome: the first one for its payment_id, never applied twice.
        No await between the check and the write, so concurrent repeats cannot both apply.
        `forced` is a refusal (reason, field) drawn as a fault, taken whatever the order."""
        key = (group, order.payment_id)
        existing = self._payments.get(key)
        if existing is not None:
            return existing
        if len(self._payments) >= self._max_payments:
            return None
        record = replace(self._outcome(group, isp, order, forced), decided_ms=self.clock())
        if hostile and record.receipt is not None:
            record = replace(record, receipt=record.receipt + HOSTILE_RECEIPT)
        self._payments[key] = record
        return record

    def _outcome(
        self, group: str, isp: str, order: Order, forced: tuple[str, str | None] | None
    ) -> Record:
        refused = Record(order.payment_id, group, isp, order.username, order.amount_paisa, None)
        if forced is not None:
            return replace(refused, reason=forced[0], field=forced[1])
        subscriber = self.current(group, isp, order.username)
        if subscriber is None:
            return replace(refused, reason="Username not found", field="username")
        refusal = catalog.refusal(subscriber, order)
        if refusal is not None:
            return replace(refused, reason=refusal[0], field=refusal[1])
        self._subscribers[(group, isp, username_key(order.username))] = catalog.after_payment(
            subscriber, order
        )
        receipt = str(next(self._receipts))
        return replace(refused, username=subscriber.username, receipt=receipt)


def _is_scenario(username: str) -> bool:
    return username_key(username) in catalog.SCENARIOS


def _disturb(draw: Draw, answer: Callable[[], Reply], what: str) -> Reply | Drop:
    """The answer as the drawn fate delivers it. `answer` decides a payment when called, so
    it is called exactly for the fates that apply: never for a 503 or a drop before."""
    if draw.fate is not Fate.NORMAL:
        log.info("isp-sim fault %s on %s", draw.fate.value, what)
    match draw.fate:
        case Fate.ERROR_5XX:
            return Reply(503, {"error": "unavailable"}, delay_s=draw.delay_s)
        case Fate.DROP_BEFORE:
            return Drop(f"{what}: dropped before the ISP did anything", draw.delay_s)
        case Fate.DROP_AFTER:
            answer()
            return Drop(f"{what}: decided, then dropped", draw.delay_s)
        case Fate.GARBAGE:
            return Reply(200, _garbled(answer()), delay_s=draw.delay_s)
    reply = answer()
    return replace(reply, delay_s=reply.delay_s + draw.delay_s)


def _garbled(reply: Reply) -> bytes:
    """The first half of the real answer: a strict prefix of a JSON object is never JSON."""
    body = _body_bytes(reply.body)
    return body[: max(1, len(body) // 2)]


def _decided(record: Record) -> Reply:
    if record.receipt is None:
        return Reply(422, _refused_json(record))
    return Reply(200, _paid_json(record))


def _paid_json(record: Record) -> dict[str, Any]:
    return {"status": "paid", "receipt": record.receipt, "payment_id": record.payment_id}


def _refused_json(record: Record) -> dict[str, Any]:
    return {"status": "refused", "reason": record.reason, "field": record.field}


def applied_at(at_ms: int) -> str:
    """A time as the daily report writes it: ISO 8601 in Nepal time, to the millisecond."""
    moment = datetime.fromtimestamp(at_ms // 1000, tz=NEPAL)
    return moment.replace(microsecond=at_ms % 1000 * 1000).isoformat(timespec="milliseconds")


def _segments(target: str) -> list[str]:
    path = target.split("?", 1)[0]
    try:
        return [unquote(s, errors="strict") for s in path.split("/")[1:]]
    except UnicodeDecodeError:
        raise BadRequest(400, "the path is not UTF-8") from None


def _parse_faults(body: bytes) -> Faults:
    try:
        return Faults.from_json(json.loads(body))
    except (ValueError, RecursionError) as exc:
        raise BadRequest(400, f"bad fault settings: {exc}") from None


def _parse_id(text: str) -> int:
    if not _DIGITS.match(text):
        raise BadRequest(400, "payment_id must be a non-negative integer")
    return int(text)


def _parse_day(text: str) -> date:
    if _DAY.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise BadRequest(400, "the date must be a day, YYYY-MM-DD")


def _parse_order(isp: str, body: bytes) -> Order:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "the body is not a JSON object")
    package_code = data.get("package_code")
    if package_code is not None:
        package_code = _int_field(data, "package_code")
    return Order(
        payment_id=_int_field(data, "payment_id"),
        merchant_id=0,  # an ISP knows nothing of the gateway's merchants
        isp=isp,
        username=_str_field(data, "username"),
        package_code=package_code,
        package_title=_str_field(data, "package_title"),
        duration_code=_str_field(data, "duration_code"),
        days=_int_field(data, "days"),
        amount_paisa=_int_field(data, "amount_paisa"),
    )


def _int_field(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(400, f"{name} must be a non-negative integer")
    return value


def _str_field(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(400, f"{name} must be a non-empty string")
    return value


# HTTP/1.1 over asyncio streams.


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request, or None when the client closed the connection between requests."""
    line = await _first_line(reader)
    if line is None:
        return None
    method, target, version = _request_line(line)
    headers = await _headers(reader)
    body = await _body(reader, headers)
    return Request(method, target, headers, body, _keep_alive(version, headers))


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise BadRequest(431, "line too long") from None


async def _first_line(reader: asyncio.StreamReader) -> bytes | None:
    # RFC 9112 2.2: ignore an empty line or two before the request line.
    for _ in range(3):
        try:
            line = await _read_line(reader)
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise
            return None
        if line.strip():
            return line
    raise BadRequest(400, "no request line")


def _request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.match(method) or not _TARGET.match(target):
        raise BadRequest(400, "malformed request line")
    if version not in _VERSIONS:
        raise BadRequest(505, "only HTTP/1.0 and HTTP/1.1")
    return method, target, version


async def _headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    total_bytes = 0
    for _ in range(MAX_HEADERS + 1):
        line = await _read_line(reader)
        total_bytes += len(line)
        if total_bytes > MAX_HEADER_BYTES:
            raise BadRequest(431, "headers too large")
        if not line.strip():
            return headers
        name, value = _header(line)
        if name in headers and name == "content-length":
            raise BadRequest(400, "repeated Content-Length")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    raise BadRequest(431, "too many headers")


def _header(line: bytes) -> tuple[str, str]:
    name, colon, value = line.decode("latin-1").rstrip("\r\n").partition(":")
    # A name with surrounding space or no colon is how request smuggling starts: refuse.
    if not colon or not _TOKEN.match(name):
        raise BadRequest(400, "malformed header")
    return name.lower(), value.strip(" \t")


async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "transfer-encoding" in headers:
        raise BadRequest(501, "only Content-Length bodies")
    length_text = headers.get("content-length", "0")
    if not _DIGITS.match(length_text):
        raise BadRequest(400, "malformed Content-Length")
    length = int(length_text)
    if length > MAX_BODY_BYTES:
        raise BadRequest(413, "body too large")
    return await reader.readexactly(length)


def _keep_alive(version: str, headers: dict[str, str]) -> bool:
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def _body_bytes(body: dict[str, Any] | bytes) -> bytes:
    if isinstance(body, bytes):
        return body
    return json.dumps(body, separators=(",", ":")).encode()


def encode_reply(reply: Reply, keep_alive: bool) -> bytes:
    body = _body_bytes(reply.body)
    try:
        phrase = http.HTTPStatus(reply.status).phrase
    except ValueError:
        phrase = ""
    head = (
        f"HTTP/1.1 {reply.status} {phrase}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _write(writer: asyncio.StreamWriter, reply: Reply, keep_alive: bool) -> None:
    writer.write(encode_reply(reply, keep_alive))
    async with asyncio.timeout(REQUEST_TIMEOUT_S):
        await writer.drain()


async def _answer(sim: IspSimulator, request: Request) -> Reply | Drop:
    try:
        outcome = sim.handle(request)
    except Exception:
        # A bug in the simulator must show as a 500, not as a network fault it did not mean.
        log.exception("isp-sim failed on %s %s", request.method, request.target)
        return Reply(500, {"error": "internal"})
    if outcome.delay_s > 0:
        await asyncio.sleep(outcome.delay_s)
    return outcome


async def _converse(
    sim: IspSimulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    for _ in range(MAX_REQUESTS_PER_CONNECTION):
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                request = await read_request(reader)
        except BadRequest as exc:
            # The framing is lost after a malformed request: answer, then close.
            reply = Reply(exc.status, {"error": "bad_request", "detail": exc.detail})
            await _write(writer, reply, keep_alive=False)
            return
        if request is None:
            return
        outcome = await _answer(sim, request)
        if isinstance(outcome, Drop):
            log.info("isp-sim drops the connection: %s", outcome.why)
            writer.transport.abort()
            return
        await _write(writer, outcome, request.keep_alive)
        if not request.keep_alive:
            return


async def serve_connection(
    sim: IspSimulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    task = asyncio.current_task()
    assert task is not None, "asyncio runs every connection callback in a task"
    sim.connections.add(task)
    try:
        await _converse(sim, reader, writer)
    except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
        pass  # the client went away or stalled: there is no one to answer
    except asyncio.CancelledError:
        # stop() ends open connections by cancelling them. Python 3.11's stream callback
        # reports a cancelled connection task as an error, so that one ends quietly.
        if not sim.stopping:
            raise
    finally:
        sim.connections.discard(task)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def start(
    host: str,
    port: int,
    *,
    api_key: str | None = None,
    slow_delay_s: float = 10.0,
    max_payments: int = MAX_PAYMENTS,
    faults: Faults | None = None,
    clock: Callable[[], int] = now_ms,
) -> tuple[asyncio.Server, IspSimulator]:
    """A listening simulator; port 0 picks a free port (see server.sockets)."""
    sim = IspSimulator(
        api_key=api_key,
        slow_delay_s=slow_delay_s,
        max_payments=max_payments,
        faults=faults,
        clock=clock,
    )

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(sim, reader, writer)

    server = await asyncio.start_server(
        on_connection, host, port, limit=MAX_LINE_BYTES, backlog=LISTEN_BACKLOG
    )
    return server, sim


async def stop(server: asyncio.Server, sim: IspSimulator) -> None:
    server.close()
    sim.stopping = True
    open_connections = list(sim.connections)
    for task in open_connections:
        task.cancel()
    await asyncio.gather(*open_connections, return_exceptions=True)
    await server.wait_closed()


async def serve(
    host: str,
    port: int,
    *,
    api_key: str | None,
    slow_delay_s: float,
    ready: asyncio.Event | None = None,
    max_payments: int = MAX_PAYMENTS,
    faults: Faults | None = None,
) -> None:
    """Serve until cancelled."""
    server, sim = await start(
        host,
        port,
        api_key=api_key,
        slow_delay_s=slow_delay_s,
        max_payments=max_payments,
        faults=faults,
    )
    try:
        if ready is not None:
            ready.set()
        await server.serve_forever()
    finally:
        await stop(server, sim)
