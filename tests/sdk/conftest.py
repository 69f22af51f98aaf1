"""The SDK against a real gateway: `bhuktani serve` in its own process, merchants made by
the CLI as an operator makes them, and the SDK's clients pointed at it over a socket."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from bhuktani_client import Client, Payment

from tests.support import Server, cli_json, running_server

_names = itertools.count(1)
NEPAL = timezone(timedelta(hours=5, minutes=45))
_references = itertools.count(1)


def new_reference(prefix: str) -> str:
    return f"{prefix}-{next(_references)}-{datetime.now().timestamp():.0f}"


def today() -> date:
    return datetime.now(NEPAL).date()


def pay_arrownet(client: Client, reference: str, username: str = "Pradhanang") -> Payment:
    """A details call, then the commit of the subscriber's 1-month plan (1695.00)."""
    client.details("arrownet", username=username)
    return client.commit(
        "arrownet", reference=reference, username=username, amount=Decimal("1695.00"), duration=1
    )


@dataclass(frozen=True)
class Merchant:
    merchant_id: int
    test_token: str
    live_token: str
    test_secret: str


def new_merchant(server: Server, *args: str) -> Merchant:
    """A merchant made by `bhuktani merchant create` (1,000,000 TEST rupees by default)."""
    made = cli_json(server.db_url, "merchant", "create", f"SDK shop {next(_names)}", *args)
    return Merchant(
        merchant_id=int(made["merchant_id"]),
        test_token=str(made["test_token"]),
        live_token=str(made["live_token"]),
        test_secret=str(made["callback_secrets"]["test"]),
    )


@pytest.fixture(scope="module")
def gateway(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for a module's tests; each test makes its own merchant."""
    log = Path(tmp_path_factory.mktemp("sdk")) / "server.log"
    with running_server(db_url, log) as running:
        yield running


@pytest.fixture
def merchant(gateway: Server) -> Merchant:
    return new_merchant(gateway)


@pytest.fixture
def client(gateway: Server, merchant: Merchant) -> Iterator[Client]:
    with Client(gateway.base_url, merchant.test_token, backoff_s=0.05) as sdk:
        yield sdk
