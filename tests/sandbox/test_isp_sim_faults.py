"""isp-sim as a fault injector: the settings and their checks, the seeded draws alone, then
each fate over real HTTP, as the wire shows it and as the LIVE adapter reads it, and the
ISP's own record compared with what the adapter was told."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import httpx
import pytest

from bhuktani.isps.base import (
    Lookup,
    NotFound,
    Paid,
    PayResult,
    ProviderUnavailable,
    Refused,
    Unknown,
)
from bhuktani.sandbox import isp_sim
from bhuktani.sandbox.faults import (
    MAX_LATENCY_S,
    MAX_SEED,
    PAYMENT_FATES,
    QUERY_FATES,
    Fate,
    FaultPlan,
    Faults,
    LatencyDist,
)
from bhuktani.services import hashcnet_v2
from tests.sandbox.conftest import (
    API_KEY,
    ORDER,
    PAYMENTS_PATH,
    Sim,
    order,
    order_json,
)
from tests.support import free_port, wait_healthy

ISP_SIM = (sys.executable, "-m", "bhuktani", "isp-sim")
VNS_LOOKUP = Lookup(isp="vns", username="jeetenaug4", merchant_id=7)
MIXED = Faults(
    refuse_p=0.1,
    error_5xx_p=0.1,
    garbage_p=0.1,
    drop_before_p=0.1,
    drop_after_p=0.1,
    hostile_p=0.1,
    seed=11,
)


def only(fate: str, p: float = 1.0, **settings: Any) -> Faults:
    probability: dict[str, Any] = {f"{fate}_p": p}
    return Faults(**probability, **settings)


# The settings


def test_defaults_inject_nothing() -> None:
    plan = FaultPlan(Faults())
    draws = [plan.payment() for _ in range(100)] + [plan.query() for _ in range(100)]
    assert {d.fate for d in draws} == {Fate.NORMAL}
    assert {d.delay_s for d in draws} == {0.0}


def test_settings_round_trip_through_json() -> None:
    faults = Faults(
        latency_s=0.5, latency_jitter_s=0.25, latency_dist=LatencyDist.EXPONENTIAL, seed=9
    )
    assert Faults.from_json(json.loads(json.dumps(faults.to_json()))) == faults
    assert faults.to_json()["latency_dist"] == "exponential"


def test_settings_missing_from_json_take_their_defaults_and_a_new_seed() -> None:
    faults = Faults.from_json({"refuse_p": 0.5})
    assert faults.refuse_p == 0.5
    assert faults.garbage_p == 0
    assert 0 <= faults.seed <= MAX_SEED


def test_probabilities_that_add_up_to_one_within_rounding_are_valid() -> None:
    assert Faults(refuse_p=0.1, error_5xx_p=0.2, garbage_p=0.7).outcome_p() == pytest.approx(1)


@pytest.mark.parametrize(
    "settings",
    [
        [],
        "refuse_p=1",
        {"refuse_prob": 0.5},  # a misspelt setting
        {"refuse_p": 1.5},
        {"error_5xx_p": -0.1},
        {"refuse_p": 0.6, "drop_after_p": 0.5},  # more than 1 together
        {"garbage_p": "0.5"},
        {"garbage_p": True},
        {"garbage_p": None},
        {"drop_before_p": float("nan")},
        {"latency_s": -1},
        {"latency_s": float("inf")},
        {"latency_jitter_s": MAX_LATENCY_S + 1},
        {"latency_dist": "normal"},
        {"latency_dist": 1},
        {"seed": -1},
        {"seed": 1.5},
        {"seed": "7"},
        {"seed": True},
        {"seed": MAX_SEED + 1},
        {"refuse_p": 10**400},
    ],
)
def test_bad_settings_are_refused(settings: Any) -> None:
    with pytest.raises(ValueError):
        Faults.from_json(settings)


# The draws, without sockets


def fates(faults: Faults, count: int = 200) -> list[Fate]:
    plan = FaultPlan(faults)
    return [plan.payment().fate for _ in range(count)]


def test_the_same_seed_draws_the_same_fates_and_delays() -> None:
    faults = replace(MIXED, latency_jitter_s=0.5)
    first, second = FaultPlan(faults), FaultPlan(faults)
    assert [first.payment() for _ in range(200)] == [second.payment() for _ in range(200)]
    assert [first.query() for _ in range(200)] == [second.query() for _ in range(200)]


def test_another_seed_draws_other_fates() -> None:
    assert fates(MIXED) != fates(replace(MIXED, seed=12))


def test_every_draw_takes_the_same_numbers_whatever_it_decides() -> None:
    # The delays depend on the seed alone, so a fate drawn differently never shifts them.
    calm = FaultPlan(Faults(latency_jitter_s=1.0, seed=5))
    stormy = FaultPlan(Faults(latency_jitter_s=1.0, refuse_p=0.5, garbage_p=0.5, seed=5))
    assert [calm.payment().delay_s for _ in range(50)] == [
        stormy.payment().delay_s for _ in range(50)
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_payment_fates_follow_their_probabilities(seed: int) -> None:
    faults = Faults(
        refuse_p=0.05, error_5xx_p=0.1, garbage_p=0.15, drop_before_p=0.2, drop_after_p=0.25
    )
    draws = 2_000
    counts = Counter(fates(replace(faults, seed=seed), draws))
    expected = {
        Fate.REFUSE: 0.05,
        Fate.ERROR_5XX: 0.1,
        Fate.GARBAGE: 0.15,
        Fate.DROP_BEFORE: 0.2,
        Fate.DROP_AFTER: 0.25,
        Fate.NORMAL: 0.25,
    }
    for fate, p in expected.items():
        # Five standard deviations of a binomial at most 0.25 * 0.75 over 2,000 draws.
        assert abs(counts[fate] / draws - p) < 0.05, (fate, counts)


def test_queries_are_never_refused_nor_applied_and_dropped() -> None:
    plan = FaultPlan(Faults(refuse_p=0.3, error_5xx_p=0.2, garbage_p=0.1, drop_after_p=0.3))
    draws = 2_000
    counts = Counter(plan.query().fate for _ in range(draws))
    assert set(counts) <= set(QUERY_FATES)
    assert abs(counts[Fate.ERROR_5XX] / draws - 0.2) < 0.05
    assert abs(counts[Fate.GARBAGE] / draws - 0.1) < 0.05
    assert counts[Fate.DROP_BEFORE] == 0


def test_fixed_latency_is_exact() -> None:
    plan = FaultPlan(Faults(latency_s=0.2, seed=3))
    assert {plan.payment().delay_s for _ in range(100)} == {0.2}


def test_uniform_latency_stays_within_its_bounds() -> None:
    plan = FaultPlan(Faults(latency_s=0.1, latency_jitter_s=0.2, seed=3))
    delays = [plan.query().delay_s for _ in range(2_000)]
    assert all(0.1 <= d <= 0.3 for d in delays)
    assert sum(delays) / len(delays) == pytest.approx(0.2, abs=0.01)


def test_exponential_latency_has_its_mean_and_a_bound() -> None:
    faults = Faults(latency_s=0.1, latency_jitter_s=0.2, latency_dist=LatencyDist.EXPONENTIAL)
    plan = FaultPlan(replace(faults, seed=3))
    delays = [plan.query().delay_s for _ in range(2_000)]
    assert min(delays) >= 0.1
    assert sum(delays) / len(delays) == pytest.approx(0.3, abs=0.03)
    wild = FaultPlan(Faults(latency_jitter_s=MAX_LATENCY_S, latency_dist=LatencyDist.EXPONENTIAL))
    assert all(wild.query().delay_s <= MAX_LATENCY_S for _ in range(2_000))


def test_stats_count_each_kind_of_draw() -> None:
    plan = FaultPlan(Faults(refuse_p=1.0, seed=4))
    for _ in range(3):
        plan.payment()
    plan.query()
    assert plan.stats() == {
        "seed": 4,
        "payments": {fate.value: 3 if fate is Fate.REFUSE else 0 for fate in PAYMENT_FATES},
        "queries": {fate.value: 1 if fate is Fate.NORMAL else 0 for fate in QUERY_FATES},
    }


# Each fate of a payment over real HTTP: the wire, the adapter, and the ISP's record


async def test_refuse_is_refused_remembered_and_never_applied(sim: Sim) -> None:
    sim.simulator.set_faults(only("refuse"))
    provider = sim.adapter()
    refused = await provider.pay(ORDER)
    assert refused == Refused(isp_sim.FAULT_REFUSAL, None)
    assert await provider.pay(ORDER) == refused  # a repeat answers the same refusal
    assert await provider.status(ORDER) == refused
    assert await sim.applied() == []
    response = await sim.client().post(PAYMENTS_PATH, json=order_json(42))
    assert response.status_code == 422
    assert response.json()["status"] == "refused"
    subscriber = await provider.lookup(VNS_LOOKUP)
    assert subscriber == hashcnet_v2.SANDBOX_USER


async def test_5xx_is_unknown_and_not_applied(sim: Sim) -> None:
    sim.simulator.set_faults(only("error_5xx"))
    provider = sim.adapter()
    response = await sim.client().post(PAYMENTS_PATH, json=order_json(42))
    assert response.status_code == 503
    result = await provider.pay(ORDER)
    assert isinstance(result, Unknown)
    assert await sim.applied() == []
    sim.simulator.set_faults(Faults())
    assert await provider.status(ORDER) == NotFound()
    # Nothing was decided, so the same payment_id may still be paid, once.
    paid = await provider.pay(ORDER)
    assert isinstance(paid, Paid)
    assert [p["receipt"] for p in await sim.applied()] == [paid.receipt]


async def test_garbage_is_unknown_and_applied(sim: Sim) -> None:
    sim.simulator.set_faults(only("garbage"))
    provider = sim.adapter()
    response = await sim.client().post(PAYMENTS_PATH, json=order_json(42))
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.content)
    assert response.content.startswith(b'{"status":"paid"')  # half of the true answer
    result = await provider.pay(ORDER)
    assert isinstance(result, Unknown)
    assert "unreadable" in result.reason
    assert await sim.applied_ids() == {41, 42}
    sim.simulator.set_faults(Faults())
    status = await provider.status(ORDER)
    assert isinstance(status, Paid)


async def test_drop_before_is_unknown_and_never_reached_the_isp(sim: Sim) -> None:
    sim.simulator.set_faults(only("drop_before"))
    provider = sim.adapter()
    with pytest.raises(httpx.TransportError):
        await sim.client().post(PAYMENTS_PATH, json=order_json(42))
    assert isinstance(await provider.pay(ORDER), Unknown)
    assert await sim.applied() == []
    sim.simulator.set_faults(Faults())
    assert await provider.status(ORDER) == NotFound()
    after = await provider.lookup(VNS_LOOKUP)
    assert after == hashcnet_v2.SANDBOX_USER


async def test_drop_after_is_unknown_and_applied(sim: Sim) -> None:
    sim.simulator.set_faults(only("drop_after"))
    provider = sim.adapter()
    with pytest.raises(httpx.TransportError):
        await sim.client().post(PAYMENTS_PATH, json=order_json(42))
    assert isinstance(await provider.pay(ORDER), Unknown)
    sim.simulator.set_faults(Faults())
    status = await provider.status(ORDER)
    assert isinstance(status, Paid)
    assert {p["payment_id"]: p["receipt"] for p in await sim.applied()}[41] == status.receipt
    after = await provider.lookup(VNS_LOOKUP)
    assert after is not None
    assert after.days_remaining == hashcnet_v2.SANDBOX_USER.days_remaining + 2 * ORDER.days


async def test_repeats_under_faults_never_apply_twice(sim: Sim) -> None:
    sim.simulator.set_faults(Faults(garbage_p=0.3, drop_after_p=0.3, error_5xx_p=0.3, seed=3))
    provider = sim.adapter()
    results = [await provider.pay(ORDER) for _ in range(20)]
    assert any(isinstance(r, Unknown) for r in results)
    sim.simulator.set_faults(Faults())
    final = await provider.pay(ORDER)
    assert isinstance(final, Paid)
    assert all(r == final for r in results if not isinstance(r, Unknown))
    assert await sim.applied() == [
        {
            "payment_id": 41,
            "group": "hashcnet-v2",
            "isp": "vns",
            "username": "jeetenaug4",
            "amount_paisa": 99_900,
            "receipt": final.receipt,
        }
    ]
    after = await provider.lookup(VNS_LOOKUP)
    assert after is not None
    assert after.days_remaining == hashcnet_v2.SANDBOX_USER.days_remaining + ORDER.days


async def test_a_decided_payment_is_never_decided_again(sim: Sim) -> None:
    provider = sim.adapter()
    paid = await provider.pay(ORDER)
    sim.simulator.set_faults(only("refuse"))
    assert await provider.pay(ORDER) == paid
    assert sim.simulator.plan.stats()["queries"]["normal"] == 1  # drawn as a question


@pytest.mark.parametrize("fate", ["error_5xx", "garbage", "drop_before"])
async def test_lookups_and_status_fail_at_the_network_level(sim: Sim, fate: str) -> None:
    provider = sim.adapter()
    paid = await provider.pay(ORDER)
    assert isinstance(paid, Paid)
    sim.simulator.set_faults(only(fate))
    with pytest.raises(ProviderUnavailable):
        await provider.lookup(VNS_LOOKUP)
    assert isinstance(await provider.status(ORDER), Unknown)
    assert isinstance(await provider.status(order(99)), Unknown)


@pytest.mark.parametrize("fate", ["refuse", "drop_after"])
async def test_lookups_and_status_are_never_refused_nor_dropped_after(sim: Sim, fate: str) -> None:
    provider = sim.adapter()
    paid = await provider.pay(ORDER)
    sim.simulator.set_faults(only(fate))
    assert await provider.lookup(VNS_LOOKUP) is not None
    assert await provider.status(ORDER) == paid


async def test_scenario_users_keep_their_behaviour_and_draw_nothing(sim: Sim) -> None:
    sim.simulator.set_faults(Faults(refuse_p=0.5, error_5xx_p=0.5))
    provider = sim.adapter()
    due = order(60, "due-user")
    assert isinstance(await provider.pay(due), Paid)
    assert isinstance(await provider.status(due), Paid)
    assert await provider.lookup(Lookup("vns", "due-user", 7)) is not None
    assert isinstance(await provider.pay(order(61, "refuse-user")), Refused)
    assert isinstance(await provider.pay(order(62, "flaky-user")), Unknown)
    assert isinstance(await provider.status(order(62, "flaky-user")), Paid)
    stats = sim.simulator.plan.stats()
    assert sum(stats["payments"].values()) == 0
    assert sum(stats["queries"].values()) == 0


async def test_admin_routes_are_never_disturbed(sim: Sim) -> None:
    sim.simulator.set_faults(only("drop_before", latency_s=5.0))
    started = time.monotonic()
    await sim.get_json("/_sim/faults")
    await sim.get_json("/_sim/stats")
    await sim.get_json("/_sim/applied")
    assert (await sim.client().get("/healthz")).status_code == 200
    assert time.monotonic() - started < 5.0


async def test_hostile_is_applied_and_paid_with_an_unsafe_receipt(sim: Sim) -> None:
    sim.simulator.set_faults(only("hostile"))
    response = await sim.client().post(PAYMENTS_PATH, json=order_json(300))
    assert response.status_code == 200
    assert b"\\u0000" in response.content  # the JSON escape of a NUL, on the wire
    receipt = response.json()["receipt"]
    digits = receipt.removesuffix(isp_sim.HOSTILE_RECEIPT)
    assert digits != receipt and digits.isdigit()
    assert [p["receipt"] for p in await sim.applied()] == [receipt]
    # Every status answer repeats it, and the adapter makes it safe, still Paid.
    status = await sim.adapter().status(order(300))
    assert status == Paid(digits + "\\x00\\x1b[2J\\u202e")


# The fates of a run, replayed from its seed


def classify(result: PayResult, applied: bool) -> Fate:
    """Which fate the adapter and the ISP's record show a payment met."""
    if isinstance(result, Paid):
        # The adapter escapes the hostile receipt's NUL: the receipt tells the fates apart.
        return Fate.HOSTILE if "\\x00" in result.receipt else Fate.NORMAL
    if isinstance(result, Refused):
        return Fate.REFUSE
    if "HTTP 503" in result.reason:
        assert not applied
        return Fate.ERROR_5XX
    if "unreadable" in result.reason:
        assert applied
        return Fate.GARBAGE
    return Fate.DROP_AFTER if applied else Fate.DROP_BEFORE


async def run_of_fates(sim: Sim, faults: Faults, first_id: int = 1_000) -> list[Fate]:
    """The fates of 200 new payments, the draws restarted from the seed of `faults`."""
    sim.simulator.set_faults(faults)
    provider = sim.adapter()
    ids = range(first_id, first_id + 200)
    results = [await provider.pay(order(payment_id)) for payment_id in ids]
    applied = await sim.applied_ids()
    return [classify(r, payment_id in applied) for payment_id, r in zip(ids, results, strict=True)]


async def test_a_run_of_200_payments_replays_from_its_seed(sim: Sim) -> None:
    first = await run_of_fates(sim, MIXED)
    assert first == fates(MIXED)  # the wire shows exactly what the plan drew
    assert len(set(first)) == len(PAYMENT_FATES)
    stats = sim.simulator.plan.stats()
    assert stats["payments"] == {fate.value: first.count(fate) for fate in PAYMENT_FATES}


async def test_the_same_seed_replays_and_another_does_not(sim: Sim) -> None:
    first = await run_of_fates(sim, MIXED)
    # A replay: a fresh simulator started with the faults of the first run.
    server, simulator = await isp_sim.start("127.0.0.1", 0, api_key=API_KEY, faults=MIXED)
    port = server.sockets[0].getsockname()[1]
    again = Sim(f"http://127.0.0.1:{port}", port, simulator)
    try:
        assert await again.get_json("/_sim/faults") == MIXED.to_json()
        assert await run_of_fates(again, MIXED) == first
        other = replace(MIXED, seed=MIXED.seed + 1)
        assert await run_of_fates(again, other, first_id=5_000) != first
    finally:
        for provider in again.providers:
            await provider.aclose()
        for client in again.clients:
            await client.aclose()
        await isp_sim.stop(server, simulator)


# The admin routes


async def test_faults_change_while_it_runs(sim: Sim) -> None:
    provider = sim.adapter()
    assert await sim.get_json("/_sim/faults") == Faults().to_json()
    assert isinstance(await provider.pay(order(1)), Paid)
    response = await sim.put_faults({"refuse_p": 1, "seed": 5})
    assert response.status_code == 200
    assert response.json() == only("refuse", seed=5).to_json()
    assert await sim.get_json("/_sim/faults") == only("refuse", seed=5).to_json()
    assert isinstance(await provider.pay(order(2)), Refused)
    assert (await sim.put_faults({"seed": 5})).status_code == 200
    assert isinstance(await provider.pay(order(3)), Paid)


async def test_replacing_the_faults_restarts_the_draws_and_the_stats(sim: Sim) -> None:
    settings = {**MIXED.to_json(), "seed": 21}
    (await sim.put_faults(settings)).raise_for_status()
    provider = sim.adapter()
    first = [await provider.pay(order(100 + i)) for i in range(30)]
    (await sim.put_faults(settings)).raise_for_status()
    stats = await sim.get_json("/_sim/stats")
    assert stats["seed"] == 21
    assert sum(stats["payments"].values()) == 0
    again = [await provider.pay(order(200 + i)) for i in range(30)]
    assert [type(r) for r in first] == [type(r) for r in again]
    stats = await sim.get_json("/_sim/stats")
    assert sum(stats["payments"].values()) == 30


async def test_a_put_without_a_seed_answers_the_seed_it_chose(sim: Sim) -> None:
    response = await sim.put_faults({"garbage_p": 0.5})
    assert response.status_code == 200
    seed = response.json()["seed"]
    assert isinstance(seed, int)
    assert (await sim.get_json("/_sim/faults"))["seed"] == seed


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"refuse_p": 2}),
        json.dumps({"refuse_p": 0.7, "garbage_p": 0.7}),
        json.dumps({"refuse_prob": 0.5}),
        json.dumps({"latency_dist": "gaussian"}),
        json.dumps([0.5]),
        '{"drop_after_p": NaN}',
        "not json",
    ],
)
async def test_bad_settings_are_refused_with_400_and_change_nothing(sim: Sim, body: str) -> None:
    sim.simulator.set_faults(only("garbage", 0.25, seed=3))
    response = await sim.client().put(
        "/_sim/faults", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert await sim.get_json("/_sim/faults") == only("garbage", 0.25, seed=3).to_json()


async def test_the_admin_routes_need_the_key(sim: Sim) -> None:
    anonymous = sim.client(headers={})
    assert (await anonymous.get("/_sim/faults")).status_code == 401
    assert (await anonymous.put("/_sim/faults", json={"refuse_p": 1})).status_code == 401
    assert (await anonymous.get("/_sim/stats")).status_code == 401
    assert sim.simulator.faults == Faults()


async def test_stats_count_the_fates_drawn(sim: Sim) -> None:
    sim.simulator.set_faults(only("refuse", seed=8))
    provider = sim.adapter()
    await provider.pay(order(1))
    await provider.pay(order(1))  # a repeat is a question
    await provider.lookup(VNS_LOOKUP)
    stats = await sim.get_json("/_sim/stats")
    assert stats["seed"] == 8
    assert stats["payments"]["refuse"] == 1
    assert stats["queries"]["normal"] == 2


# Latency


async def test_latency_is_added_to_every_answer(sim: Sim) -> None:
    provider = sim.adapter()
    started = time.monotonic()
    await provider.lookup(VNS_LOOKUP)
    baseline_s = time.monotonic() - started
    sim.simulator.set_faults(Faults(latency_s=0.2))
    started = time.monotonic()
    await provider.lookup(VNS_LOOKUP)
    lookup_s = time.monotonic() - started
    started = time.monotonic()
    assert isinstance(await provider.pay(ORDER), Paid)
    pay_s = time.monotonic() - started
    assert lookup_s >= 0.2
    assert pay_s >= 0.2
    assert lookup_s > 2 * baseline_s


async def test_latency_comes_after_the_decision(sim: Sim) -> None:
    # A timeout never means "not applied": the ISP decided before it was slow to say so.
    sim.simulator.set_faults(Faults(latency_s=1.0))
    result = await sim.adapter(timeout_s=0.2).pay(ORDER)
    assert isinstance(result, Unknown)
    assert "in time" in result.reason
    sim.simulator.set_faults(Faults())
    assert isinstance(await sim.adapter().status(ORDER), Paid)


# The command


FAULT_FLAGS = ("--seed", "7", "--refuse-p", "0.5", "--latency-s", "0.01")


def test_the_command_serves_the_faults_it_was_given() -> None:
    port = free_port()
    process = subprocess.Popen(
        [*ISP_SIM, "--port", str(port), "--api-key", API_KEY, *FAULT_FLAGS],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process)
        response = httpx.get(
            base_url + "/_sim/faults", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert response.status_code == 200
        assert response.json() == Faults(refuse_p=0.5, latency_s=0.01, seed=7).to_json()
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert b"seed 7 (replay with --seed 7)" in out
    assert b'"refuse_p": 0.5' in out


def test_the_command_refuses_bad_faults() -> None:
    done = subprocess.run(
        [*ISP_SIM, "--port", "0", "--refuse-p", "0.7", "--drop-after-p", "0.7"],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert b"must not exceed 1" in done.stderr


def test_the_command_prints_a_random_seed_when_none_is_given() -> None:
    port = free_port()
    process = subprocess.Popen(
        [*ISP_SIM, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        seed = httpx.get(f"http://127.0.0.1:{port}/_sim/faults").json()["seed"]
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
    assert isinstance(seed, int)
    assert f"seed {seed} (replay with --seed {seed})".encode() in out
