"""Request rate limits against a running `bhuktani serve`, over real sockets (docs/OPERATING.md,
"Limits", spec/API.md section 2: 429, code 1022, Retry-After). Every burst is bounded in
count and time, and every count of admitted requests is checked against what the bucket
allows: the burst, plus the rate times the seconds the burst took."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from bhuktani.merchants import service
from bhuktani.store import Database, connect
from tests.api.test_errors import assert_envelope
from tests.cli.test_commands import bhuktani
from tests.conftest import only_postgresql
from tests.support import Server, assert_books_balance, new_merchant, running_server

BALANCE = "/api/balance/"
STATUS = "/api/service/status/"
BULK_STATUS = "/api/service/bulk/status/"
HASHCNET_DETAILS = "/api/servicegroup/details/hashcnet-v2/"
ARROWNET_DETAILS = "/api/servicegroup/details/arrownet/"
ARROWNET_COMMIT = "/api/servicegroup/commit/arrownet/"
# Another loopback address of this host: a client of its own to the server.
OTHER_ADDRESS = "127.0.0.2"


@asynccontextmanager
async def http_from(
    server: Server, local_address: str = "127.0.0.1", connections: int = 20
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(
        local_address=local_address,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )
    async with httpx.AsyncClient(base_url=server.base_url, transport=transport, timeout=20) as http:
        yield http


def balance(http: httpx.AsyncClient, token: str) -> Any:
    return http.get(BALANCE, headers={"Authorization": f"Token {token}"})


def assert_rate_limited(response: httpx.Response) -> int:
    assert_envelope(response, 429, "1022")
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    return int(retry_after)


async def timed_burst(
    http: httpx.AsyncClient, token: str, count: int
) -> tuple[list[httpx.Response], float]:
    started = time.monotonic()
    responses = await asyncio.gather(*(balance(http, token) for _ in range(count)))
    return list(responses), time.monotonic() - started


async def test_a_burst_past_a_merchants_limit_gets_1022_and_another_merchant_none(
    server: Server, db: Database
) -> None:
    limited = await new_merchant(db, name="limited")
    other = await new_merchant(db, name="other")
    await service.set_rate_limit(db, limited.merchant_id, 5, 10)
    async with http_from(server) as http:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(balance(http, m.test_token) for _ in range(60) for m in (limited, other))
        )
        elapsed_s = time.monotonic() - started
        mine, theirs = responses[0::2], responses[1::2]
        ok = [r for r in mine if r.status_code == 200]
        assert 10 <= len(ok) <= 10 + 5 * elapsed_s + 1, (len(ok), elapsed_s)
        waits = [assert_rate_limited(r) for r in mine if r.status_code != 200]
        assert waits and max(waits) <= 1  # one token comes back every 0.2 s
        # The other merchant, in the same burst on the same connections, is never refused.
        assert [r.status_code for r in theirs] == [200] * 60
        await asyncio.sleep(max(waits))
        assert (await balance(http, limited.test_token)).status_code == 200
    # The operator's view: one warning for the burst, and each refusal's request line.
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    trips = [line for line in lines if line.get("event") == "rate_limited"]
    assert len(trips) == 1, trips
    assert trips[0]["reason"] == "merchant" and trips[0]["merchant_id"] == limited.merchant_id
    assert (trips[0]["env"], trips[0]["per_s"], trips[0]["burst"]) == ("test", 5, 10)
    refused = [line for line in lines if line.get("error_code") == "1022"]
    assert len(refused) == len(waits)
    assert all(line["status"] == 429 for line in refused)
    assert all(line["merchant_id"] == limited.merchant_id for line in refused)


def _details_body(token: str) -> dict[str, Any]:
    return {"token": token, "reference": "d-1", "username": "jeetenaug4", "service_slug": "vns"}


def _commit_body(token: str, reference: str) -> dict[str, Any]:
    return {
        "token": token,
        "username": "Pradhanang",
        "amount": "1695.00",
        "duration": 1,
        "reference": reference,
    }


async def test_every_merchant_call_counts_and_a_refused_commit_moves_nothing(
    server: Server, db: Database
) -> None:
    merchant = await new_merchant(db)
    await service.set_rate_limit(db, merchant.merchant_id, 1, 8)
    token = merchant.test_token
    paid = "paid-" + uuid.uuid4().hex[:12]
    refused = "refused-" + uuid.uuid4().hex[:12]
    async with http_from(server) as http:
        started = time.monotonic()
        calls = [
            http.post(HASHCNET_DETAILS, json=_details_body(token)),
            http.post(ARROWNET_DETAILS, json={"token": token, "username": "Pradhanang"}),
            http.post(ARROWNET_COMMIT, json=_commit_body(token, paid)),
            http.get(STATUS, params={"token": token, "reference": paid}),
            http.get(
                BULK_STATUS, params={"token": token, "references": paid, "reference_length": 1}
            ),
            balance(http, token),
        ]
        answered = [await call for call in calls]
        assert [r.status_code for r in answered] == [200] * 6, [r.text for r in answered]
        # 6 of 8 spent, plus what a second refills: at most 3 more pass, then 1022.
        passed = 0
        while True:
            response = await http.post(ARROWNET_COMMIT, json=_commit_body(token, refused))
            if response.status_code == 429:
                break
            assert response.status_code in (200, 400), response.text  # 1013 after the first
            passed += 1
            assert passed <= 2 + (time.monotonic() - started) + 1
            refused = "refused-" + uuid.uuid4().hex[:12]
        assert_rate_limited(response)
        await asyncio.sleep(int(response.headers["retry-after"]))
        # The refused commit never reached the ledger: its reference is unknown.
        lookup = await http.get(STATUS, params={"token": token, "reference": refused})
        assert_envelope(lookup, 400, "002")
    await assert_books_balance(db)


async def test_bad_token_guesses_from_one_address_are_refused_and_others_still_pass(
    server: Server, db: Database
) -> None:
    merchant = await new_merchant(db)
    guesses = [f"TEST:{uuid.uuid4().hex[:20]}" for _ in range(60)]
    async with http_from(server, OTHER_ADDRESS) as guesser, http_from(server) as honest:
        started = time.monotonic()
        answers = [(await balance(guesser, guess)) for guess in guesses]
        elapsed_s = time.monotonic() - started
        looked_up = [r for r in answers if r.status_code == 400]
        for response in looked_up:
            assert_envelope(response, 400, "1002")
        # 20 failures at once, one a second after: the rest are refused before any look-up.
        assert 20 <= len(looked_up) <= 20 + elapsed_s + 1, (len(looked_up), elapsed_s)
        refusals = [r for r in answers if r.status_code != 400]
        assert len(refusals) >= 60 - 20 - elapsed_s - 1
        for response in refusals:
            assert_rate_limited(response)
        # The guesser's good token waits too: the address is refused before the token is read.
        assert_rate_limited(await balance(guesser, merchant.test_token))
        # A header claiming another client changes nothing: no proxy is trusted.
        spoofed = await guesser.get(
            BALANCE,
            headers={"Authorization": f"Token {guesses[0]}", "X-Forwarded-For": "203.0.113.9"},
        )
        assert_rate_limited(spoofed)
        # Another address of the same server is not touched, for good tokens or bad.
        assert (await balance(honest, merchant.test_token)).status_code == 200
        assert_envelope(await balance(honest, guesses[0]), 400, "1002")
        await asyncio.sleep(1.0)
        assert (await balance(guesser, merchant.test_token)).status_code == 200


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(
    db_url: str, db: Database, tmp_path: Path
) -> None:
    merchant = await new_merchant(db)
    env = {"BHUKTANI_FORWARDED_ALLOW_IPS": "127.0.0.1"}
    with running_server(db_url, tmp_path / "server.log", **env) as server:
        async with http_from(server) as proxy:

            def via_proxy(token: str, client: str) -> Any:
                headers = {"Authorization": f"Token {token}", "X-Forwarded-For": client}
                return proxy.get(BALANCE, headers=headers)

            for _ in range(20):
                guess = f"TEST:{uuid.uuid4().hex[:20]}"
                assert_envelope(await via_proxy(guess, "203.0.113.7"), 400, "1002")
            assert_rate_limited(await via_proxy(f"TEST:{uuid.uuid4().hex[:20]}", "203.0.113.7"))
            # Another client of the same proxy, and the proxy itself, are not touched.
            assert_envelope(await via_proxy("TEST:" + "z" * 20, "203.0.113.8"), 400, "1002")
            assert (await via_proxy(merchant.test_token, "203.0.113.8")).status_code == 200
            assert (await balance(proxy, merchant.test_token)).status_code == 200


async def test_a_limit_set_with_the_cli_reaches_the_running_server_within_seconds(
    db_url: str, db: Database, tmp_path: Path
) -> None:
    merchant = await new_merchant(db)
    # The token check's cache as in production, where the new limit rides on the next check.
    with running_server(db_url, tmp_path / "server.log", BHUKTANI_AUTH_CACHE_S="2") as server:
        async with http_from(server) as http:
            responses, _ = await timed_burst(http, merchant.test_token, 40)
            assert [r.status_code for r in responses] == [200] * 40
            done = await bhuktani(
                db_url,
                "merchant", "set-rate-limit", str(merchant.merchant_id), "--per-s", "1", "--burst", "3",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert "1/s with bursts of 3" in done.stdout
            set_at = time.monotonic()
            while True:
                responses, _ = await timed_burst(http, merchant.test_token, 10)
                if any(r.status_code == 429 for r in responses):
                    break
                assert time.monotonic() - set_at < 5, "the new limit was not taken in 5 s"
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.2)  # a token back, at most three: the new burst
            responses, _ = await timed_burst(http, merchant.test_token, 10)
            assert 1 <= sum(r.status_code == 200 for r in responses) <= 3
            done = await bhuktani(
                db_url, "merchant", "set-rate-limit", str(merchant.merchant_id), "--default"
            )
            assert done.returncode == 0, done.stderr
            assert "the default limit, 100/s with bursts of 200" in done.stdout
            set_at = time.monotonic()
            while True:
                await asyncio.sleep(0.5)
                responses, _ = await timed_burst(http, merchant.test_token, 20)
                if all(r.status_code == 200 for r in responses):
                    break
                assert time.monotonic() - set_at < 5, "the default was not taken back in 5 s"


async def test_set_rate_limit_wants_both_numbers_or_default_alone(
    db_url: str, db: Database
) -> None:
    merchant = await new_merchant(db)
    mid = str(merchant.merchant_id)
    for args in (["--per-s", "5"], ["--burst", "5"], ["--default", "--per-s", "5"], []):
        done = await bhuktani(db_url, "merchant", "set-rate-limit", mid, *args)
        assert done.returncode != 0, args
    for args in (["--per-s", "0", "--burst", "5"], ["--per-s", "5", "--burst", "-1"]):
        done = await bhuktani(db_url, "merchant", "set-rate-limit", mid, *args)
        assert done.returncode != 0, args
    done = await bhuktani(db_url, "merchant", "set-rate-limit", "987654321", "--default")
    assert done.returncode == 1 and "no merchant 987654321" in done.stderr


@only_postgresql
async def test_the_limit_holds_across_two_worker_processes_on_postgresql(
    empty_pg_url: str, tmp_path: Path
) -> None:
    database = await connect(empty_pg_url)
    try:
        merchant = await new_merchant(database)
        await service.set_rate_limit(database, merchant.merchant_id, 20, 40)
    finally:
        await database.close()
    with running_server(empty_pg_url, tmp_path / "server.log", workers=2) as server:
        # 32 connections: the kernel spreads them over both workers' sockets by their
        # ports (the chance that all 32 land on one is 2**-31).
        async with http_from(server, connections=32) as http:
            responses, elapsed_s = await timed_burst(http, merchant.test_token, 400)
    ok = sum(r.status_code == 200 for r in responses)
    for response in responses:
        if response.status_code != 200:
            assert_rate_limited(response)
    # One bucket for both processes: a bucket each would let up to twice this through.
    # (A lease left idle in one process may keep a token or two from the burst.)
    assert 40 - 4 <= ok <= 40 + 20 * elapsed_s + 2, (ok, elapsed_s)
