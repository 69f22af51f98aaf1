"""The server's log, as an operator reads it after a full payment cycle: JSON lines, each
request line with its request id and the merchant and reference it concerned, and never
a token (STYLE.md habit 6), wherever the client put it."""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bhuktani.store import connect
from tests.support import assert_books_balance, eventually, new_merchant, running_server

MADE_UP_TOKEN = "MadeUpToken-" + uuid.uuid4().hex
MADE_UP_TEST_TOKEN = "TEST:" + uuid.uuid4().hex[:20]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def arrownet_payment(token: str, username: str, reference: str) -> dict[str, Any]:
    return {
        "token": token,
        "username": username,
        "amount": "1695.00",
        "duration": 1,
        "reference": reference,
    }


class Cycle:
    """What the payment cycle sent, to find it again in the log."""

    def __init__(self, test_token: str, live_token: str, merchant_id: int) -> None:
        self.test_token = test_token
        self.live_token = live_token
        self.merchant_id = merchant_id
        # request id (X-Request-ID answered) -> the reference the request concerned, if any
        self.requests: dict[str, str | None] = {}
        self.unauthenticated: list[str] = []

    def record(self, response: httpx.Response, reference: str | None) -> None:
        self.requests[response.headers["x-request-id"]] = reference


async def run_cycle(http: httpx.AsyncClient, cycle: Cycle) -> None:
    token = cycle.test_token

    details_reference = unique("details")
    details = await http.post(
        "/api/servicegroup/details/hashcnet-v2/",
        json={
            "token": token,
            "reference": details_reference,
            "username": "jeetenaug4",
            "service_slug": "vns",
        },
    )
    assert details.status_code == 200, details.text
    cycle.record(details, details_reference)

    paid_reference = unique("paid")
    paid = await http.post(
        "/api/servicegroup/commit/hashcnet-v2/",
        json={
            "token": token,
            "reference": paid_reference,
            "session_id": details.json()["session_id"],
            "package_code": 9,
            "duration_code": "1",
            "amount": 999.0,
        },
    )
    assert paid.status_code == 200, paid.text
    assert paid.json()["state"] == "Success"
    cycle.record(paid, paid_reference)

    slow_reference = unique("slow")
    slow = await http.post(
        "/api/servicegroup/commit/arrownet/",
        json=arrownet_payment(token, "slow-user", slow_reference),
    )
    assert slow.status_code == 200, slow.text
    assert slow.json()["state"] == "Processing"
    cycle.record(slow, slow_reference)

    async def settled() -> bool:
        # The token in the query string, as the documented look-up allows.
        status = await http.get(
            "/api/service/status/", params={"token": token, "reference": slow_reference}
        )
        assert status.status_code == 200, status.text
        cycle.record(status, slow_reference)
        return bool(status.json()["state"] == "Success")

    await eventually(settled, timeout_s=15)

    balance = await http.get("/api/balance", headers={"Authorization": f"Token {token}"})
    assert balance.status_code == 200, balance.text
    cycle.record(balance, None)

    live_balance = await http.get("/api/balance", params={"token": cycle.live_token})
    assert live_balance.status_code == 200, live_balance.text
    cycle.record(live_balance, None)

    refused_reference = unique("refused")
    refused = await http.post(
        "/api/servicegroup/commit/arrownet/",
        json=arrownet_payment(token, "refuse-user", refused_reference),
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error_code"] == "1021"
    cycle.record(refused, refused_reference)

    for made_up in (MADE_UP_TOKEN, MADE_UP_TEST_TOKEN):
        unknown = await http.post(
            "/api/servicegroup/commit/arrownet/",
            json=arrownet_payment(made_up, "Pradhanang", unique("unknown")),
        )
        assert unknown.status_code == 400, unknown.text
        assert unknown.json()["error_code"] == "1002"
        cycle.unauthenticated.append(unknown.headers["x-request-id"])
        lookup = await http.get("/api/service/status/", params={"token": made_up, "reference": "x"})
        assert lookup.json()["error_code"] == "1002"
        cycle.unauthenticated.append(lookup.headers["x-request-id"])


@dataclass
class Logged:
    cycle: Cycle
    log: str

    def lines(self) -> list[str]:
        return [line for line in self.log.splitlines() if line.strip()]

    def requests(self) -> dict[str, dict[str, Any]]:
        """The one line per request, by request id."""
        found: dict[str, dict[str, Any]] = {}
        for line in self.lines():
            entry = json.loads(line)
            if entry.get("event") == "request":
                assert entry["request_id"] not in found, f"two request lines: {line}"
                found[entry["request_id"]] = entry
        return found


@pytest.fixture(scope="module")
async def logged(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Logged:
    """One full cycle against `bhuktani serve`, and its whole log once the server stopped."""
    log_path = tmp_path_factory.mktemp("logs") / "server.log"
    db = await connect(db_url)
    try:
        merchant = await new_merchant(db)
        cycle = Cycle(merchant.test_token, merchant.live_token, merchant.merchant_id)
        with running_server(db_url, log_path) as server:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=15) as http:
                await run_cycle(http, cycle)
        await assert_books_balance(db)
    finally:
        await db.close()
    return Logged(cycle, log_path.read_text())


def test_every_log_line_is_json(logged: Logged) -> None:
    lines = logged.lines()
    assert lines, "the cycle was logged"
    for line in lines:
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        assert "event" in entry, line


def test_every_request_line_carries_its_request_id(logged: Logged) -> None:
    requests = logged.requests()
    for request_id in [*logged.cycle.requests, *logged.cycle.unauthenticated]:
        assert request_id in requests, f"no request line for {request_id}"
    for entry in requests.values():
        assert entry["request_id"] not in ("", "-"), entry
        assert {"method", "path", "status", "duration_ms"} <= set(entry), entry


def test_request_lines_name_the_merchant_and_the_reference(logged: Logged) -> None:
    requests = logged.requests()
    for request_id, reference in logged.cycle.requests.items():
        entry = requests[request_id]
        assert entry.get("merchant_id") == logged.cycle.merchant_id, entry
        if reference is not None:
            assert entry.get("reference") == reference, entry
    for request_id in logged.cycle.unauthenticated:
        assert "merchant_id" not in requests[request_id], requests[request_id]


def test_a_commit_line_says_what_the_isp_answered_and_how_long_it_took(logged: Logged) -> None:
    requests = logged.requests()
    outcomes = {}
    for request_id, reference in logged.cycle.requests.items():
        entry = requests[request_id]
        if entry["path"].startswith("/api/servicegroup/commit/"):
            assert isinstance(entry["isp_ms"], float | int), entry
            assert 0 <= entry["isp_ms"] <= entry["duration_ms"], entry
            outcomes[str(reference).split("-")[0]] = (entry["isp"], entry["isp_outcome"])
    assert outcomes == {
        "paid": ("vns", "Paid"),
        "slow": ("arrownet", "Unknown"),
        "refused": ("arrownet", "Refused"),
    }


def test_the_reconciler_logs_the_payment_it_settled(logged: Logged) -> None:
    entries = [json.loads(line) for line in logged.lines()]
    settled = [e for e in entries if e.get("event") == "reconciled" and e.get("state") == "Success"]
    assert settled, "a line says which payment the reconciler settled"
    assert all(isinstance(e.get("payment_id"), int) for e in settled), settled


def test_no_token_appears_in_the_log(logged: Logged) -> None:
    secrets = (
        logged.cycle.test_token,
        logged.cycle.live_token,
        MADE_UP_TOKEN,
        MADE_UP_TEST_TOKEN,
    )
    for secret in secrets:
        # Neither the token nor its random part after the prefix.
        assert secret.removeprefix("TEST:") not in logged.log, secret


def test_a_request_line_has_the_shape_of_every_other_line_and_obeys_the_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    import structlog

    from bhuktani import logs

    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    try:
        logs.configure_logging("INFO")
        with logs.fields(request_id="r1", method="POST", path="/x", note=MADE_UP_TEST_TOKEN):
            logs.request_line(200, 1.5)
            structlog.get_logger().info("request", status=200, duration_ms=1.5)
        logs.configure_logging("WARNING")
        logs.request_line(200, 1.5)
    finally:
        monkeypatch.undo()
        logs.configure_logging("INFO")
    direct, through_structlog = (json.loads(line) for line in out.getvalue().splitlines())
    assert list(direct) == list(through_structlog)
    assert direct.pop("timestamp").endswith("Z")
    through_structlog.pop("timestamp")
    assert direct == through_structlog
    assert direct["note"] == "[scrubbed]"


@pytest.mark.parametrize("workers", [1, 2])
def test_uvicorn_lines_are_json_lines_too(tmp_path: Any, workers: int) -> None:
    """Start-up, a request uvicorn refuses itself, and the drain: every line of the
    server's output (stdout and stderr) parses, uvicorn's with its logger named."""
    import socket

    from bhuktani.store.migrate import upgrade

    url = f"sqlite:///{tmp_path}/json.db"
    upgrade(url)
    log_path = tmp_path / "serve.log"
    with running_server(url, log_path, workers=workers, reconciler=False) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            refused = sock.recv(65536)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]

    assert refused.startswith(b"HTTP/1.1 400")
    entries = []
    for line in lines:
        entry = json.loads(line)
        assert isinstance(entry, dict) and "event" in entry and "level" in entry, line
        assert entry["timestamp"].endswith("Z"), line
        entries.append(entry)
    uvicorn_events = {e["event"] for e in entries if e.get("logger") == "uvicorn.error"}
    assert "Invalid HTTP request received." in uvicorn_events, uvicorn_events
    assert "Application shutdown complete." in uvicorn_events, uvicorn_events
