"""A bank run: clients, the killer, the operator and the receiver, then the checks."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bhuktani import money
from bhuktani.books import charges, credit_requests
from bhuktani.clock import nepal_day, now_ms
from bhuktani.merchants import service as merchants_service
from bhuktani.services import registry
from bhuktani.store import Database, connect
from tests.bank.checks import Asked, Report, Settle, check
from tests.bank.clients import Delivery, Run, client
from tests.bank.plan import (
    DRAIN_BOUND_S,
    MAX_TRIES,
    Intent,
    Merchant,
    charges_of,
    plan,
    spend,
)
from tests.bank.processes import (
    GATEWAY_ENV,
    SIM_KEY,
    GatewayProcess,
    _healthy,
    _spawn_isp_sim,
    _stop,
)
from tests.receiver import Received, Receiver, receiving
from tests.support import KEY, fast_env, free_port


async def _killer(
    run: Run, points: Sequence[tuple[float, float, float]], count: Counter[str]
) -> None:
    """SIGKILL the gateway when the load reaches each point (a fraction of the payments),
    after a seeded delay, and restart it after a seeded pause; late points land in the
    reconciliation that follows the load, which is as good a moment."""
    for fraction, delay_s, pause_s in points:
        while run.done < fraction * len(run.intents) and not run.load_over:
            await asyncio.sleep(0.01)
        await asyncio.sleep(delay_s)
        await run.gateway.kill()
        count["kills"] += 1
        await asyncio.sleep(pause_s)
        await run.gateway.start()


async def _operator(
    run: Run, db: Database, top_up: dict[int, int], fraction: float, asked: list[Asked]
) -> None:
    """Mid-run, while payments hold credits and the gateway is being killed: credit loads,
    as `bhuktani credits load` does, and credit requests the merchants send through the
    API, one approved (a load) and one rejected (nothing moves) for each merchant."""
    while run.done < fraction * len(run.intents) and not run.load_over:
        await asyncio.sleep(0.02)
    for index, amount_paisa in top_up.items():
        await credit_requests.load(
            db, run.merchants[index].id, "live", amount_paisa, "bank top-up", operator="bank"
        )
    for merchant in run.merchants[1:]:
        for env, rupees, approve in (("live", "500.00", True), ("test", "300.50", False)):
            request_id = await _ask_credits(run, merchant, env, rupees)
            if request_id is None:
                continue
            if approve:
                await credit_requests.approve(db, request_id, operator="bank")
            else:
                await credit_requests.reject(db, request_id, operator="bank", note="bank run")
            asked.append(Asked(merchant.id, env, request_id, money.to_paisa(rupees), approve))


async def _ask_credits(run: Run, merchant: Merchant, env: str, rupees: str) -> int | None:
    """POST /api/public/creditrequest/ until it is answered: a kill may cut it off."""
    token = merchant.live_token if env == "live" else merchant.test_token
    for _ in range(MAX_TRIES):
        with contextlib.suppress(httpx.HTTPError):
            response = await run.http.post(
                "/api/public/creditrequest/", json={"token": token, "credit": rupees}
            )
            body = response.json()
            if response.status_code == 200 and body.get("detail") == "Credit Requested":
                return int(body["request_id"])
            if response.status_code == 400:
                run.problem(f"credit request of merchant {merchant.id} {env} refused: {body}")
                return None
        await asyncio.sleep(0.2)
    run.problem(f"credit request of merchant {merchant.id} {env}: no answer in {MAX_TRIES}")
    return None


def _verified(secret: str, request: Received) -> bool:
    try:
        Webhook(secret).verify(request.body, request.headers, json_parse=False)
    except WebhookVerificationError:
        return False
    return True


async def _verify_deliveries(run: Run, receiver: Receiver, stop: asyncio.Event) -> None:
    """What a merchant's receiver does: check each signature as the request arrives (the
    signature's timestamp is only good for a few minutes)."""
    seen = 0
    while True:
        stopping = stop.is_set()
        fresh = receiver.received[seen:]
        seen += len(fresh)
        for request in fresh:
            fields = request.fields()
            intent = run.by_reference.get(fields.get("reference", ""))
            signed = intent is not None and _verified(
                run.merchants[intent.merchant].secrets[intent.env], request
            )
            event_id = request.headers.get("webhook-id", "")
            run.deliveries.append(Delivery(event_id, fields, signed))
        if stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.1)


async def _unsettled(db: Database, merchant_ids: Sequence[int]) -> int:
    """Payments still Processing and not flagged, and callbacks still pending."""
    count = 0
    async with db.transaction() as tx:
        for merchant_id in merchant_ids:
            payments = await tx.fetchrow(
                "SELECT COUNT(*) AS n FROM payments WHERE merchant_id = $1"
                " AND state = 'Processing' AND flagged = $2",
                merchant_id,
                False,
            )
            callbacks = await tx.fetchrow(
                "SELECT COUNT(*) AS n FROM callbacks WHERE merchant_id = $1 AND status = 'pending'",
                merchant_id,
            )
            assert payments is not None and callbacks is not None
            count += int(payments["n"]) + int(callbacks["n"])
    return count


async def _drain(db: Database, merchant_ids: Sequence[int]) -> int:
    deadline = time.monotonic() + DRAIN_BOUND_S
    while (left := await _unsettled(db, merchant_ids)) and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
    return left


async def _create_merchants(
    db: Database, seed: int, intents: Sequence[Intent], count: int, callback_url: str
) -> tuple[list[Merchant], dict[int, int]]:
    """Merchant 0 is short of LIVE credits (1016 under load, then a top-up mid-run);
    the others can pay for everything they are given, their service charges included
    (plan.charges_of: merchants 1 and 2 pay some)."""
    created, top_up = [], {}
    for index in range(count):
        rules = charges_of(index)
        live_paisa = spend(intents, index, "live", rules)
        if index == 0:
            top_up[0] = live_paisa // 4
            live_paisa = live_paisa * 9 // 20
        else:
            live_paisa += 1_000_00
        new = await merchants_service.create(
            db,
            f"bank {seed} merchant {index}",
            key=KEY,
            callback_url=callback_url,
            live_credits_paisa=live_paisa,
            test_credits_paisa=spend(intents, index, "test", rules) + 1_000_00,
            operator="bank",
        )
        for env, by_service in rules.items():
            for service, charge in by_service.items():
                await charges.set_charge(db, new.merchant_id, env, service, charge, operator="bank")
        created.append(
            Merchant(
                new.merchant_id,
                new.live_token,
                new.test_token,
                {env.value: secret for env, secret in new.callback_secrets.items()},
                rules,
            )
        )
    return created, top_up


async def run_bank(
    db_url: str,
    *,
    seed: int,
    payments: int,
    clients: int,
    merchants: int,
    kills: int,
    duration_bound_s: float,
    workdir: Path,
    test_payments: int | None = None,
) -> Report:
    """The whole run and its checks: `payments` LIVE payments and `test_payments` TEST
    ones (a fifth as many by default) from `clients` concurrent clients across
    `merchants` merchants, while the gateway is SIGKILLed `kills` times. The load and the
    kills must end within `duration_bound_s`; reconciliation within DRAIN_BOUND_S more."""
    started = time.monotonic()
    started_ms = now_ms()
    # Shown with a failure's captured output, whatever the failure.
    print(f"bank run: seed {seed}, {db_url.split('://')[0]}, logs in {workdir}")
    test_count = max(20, payments // 5) if test_payments is None else test_payments
    intents = plan(seed, payments, test_count, merchants)
    report = Report(
        seed=seed,
        database=db_url.split("://")[0],
        workdir=workdir,
        payments=payments,
        test_payments=test_count,
        clients=clients,
        merchants=merchants,
    )
    kill_rng = random.Random(seed + 1)
    points = sorted(
        (kill_rng.uniform(0.05, 1.0), kill_rng.uniform(0, 0.3), kill_rng.uniform(0, 0.3))
        for _ in range(kills)
    )
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    # Every service's LIVE ISP is the one isp-sim.
    isps = {
        f"BHUKTANI_ISPS__{service.slug.upper().replace('-', '_')}__{field}": value
        for service in registry.SERVICES
        for field, value in (("BASE_URL", sim_url), ("API_KEY", SIM_KEY))
    }
    env = fast_env(db_url, **isps, **GATEWAY_ENV)
    gateway = GatewayProcess(free_port(), env, workdir)
    # Both start while the merchants are made: a Python start is seconds on a busy machine.
    sim = _spawn_isp_sim(seed, sim_port, workdir)
    gateway.spawn()
    db = await connect(db_url)
    try:
        async with receiving() as receiver:
            # Some refusals first, so that a few TEST callbacks are delivered on a retry.
            receiver.fail_first = 3
            made, top_up = await _create_merchants(db, seed, intents, merchants, receiver.url)
            await _healthy(sim_url, sim)
            await gateway.ready()
            report.setup_s = time.monotonic() - started
            limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients)
            async with httpx.AsyncClient(
                base_url=gateway.base_url, timeout=20, limits=limits
            ) as http:
                run = Run(seed, intents, made, gateway, http)
                asked: list[Asked] = []
                stop = asyncio.Event()
                verifier = asyncio.create_task(_verify_deliveries(run, receiver, stop))
                try:
                    report.kills = await _load(
                        run, db, clients, points, top_up, asked, duration_bound_s
                    )
                    report.load_s = time.monotonic() - started - report.setup_s
                    drain_started = time.monotonic()
                    left = await _drain(db, [m.id for m in made])
                    report.drain_s = time.monotonic() - drain_started
                    if left:
                        run.problem(
                            f"{left} payments or callbacks unsettled after {DRAIN_BOUND_S}s"
                        )
                finally:
                    stop.set()
                    await verifier
                days = {nepal_day(started_ms), nepal_day(now_ms())}
                await check(run, db, sim_url, report, asked, Settle(env, sorted(days)))
        report.problems = run.problems
        report.answers = run.answers
    finally:
        await gateway.stop()
        await _stop(sim)
        await db.close()
    report.total_s = time.monotonic() - started
    (workdir / "report.txt").write_text(report.failure())
    return report


async def _load(
    run: Run,
    db: Database,
    clients: int,
    points: Sequence[tuple[float, float, float]],
    top_up: dict[int, int],
    asked: list[Asked],
    bound_s: float,
) -> int:
    """The clients, the killer and the operator, until every intent has its answer and
    every kill is done; then the gateway is left up. Returns the number of kills."""
    queue: asyncio.Queue[Intent] = asyncio.Queue()
    for intent in run.intents:
        queue.put_nowait(intent)
    kills = Counter[str]()
    killer = asyncio.create_task(_killer(run, points, kills))
    operator = asyncio.create_task(_operator(run, db, top_up, fraction=0.4, asked=asked))
    workers = [asyncio.create_task(client(run, queue)) for _ in range(clients)]
    try:
        async with asyncio.timeout(bound_s):
            await asyncio.gather(*workers)
            run.load_over = True
            await asyncio.gather(killer, operator)
    except TimeoutError:
        run.problem(f"the load did not end within {bound_s}s: {run.done} of {len(run.intents)}")
    finally:
        run.load_over = True
        for task in (*workers, killer, operator):
            task.cancel()
        await asyncio.gather(*workers, killer, operator, return_exceptions=True)
    if not run.gateway.up.is_set():
        await run.gateway.start()
    return kills["kills"]
