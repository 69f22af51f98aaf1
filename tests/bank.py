"""The bank test: money under faults and crashes, counted to the paisa afterwards.

`run_bank` starts `bhuktani isp-sim` with seeded faults (latency, refusals, 5xx, unreadable
answers, connections dropped before and after the ISP applies a payment) and `bhuktani
serve` on a fixed port with its LIVE providers pointed at that simulator. Many client tasks
pay for plans across several merchants while a killer SIGKILLs the gateway at seeded
moments and restarts it on the same port. Then the gateway stays up until reconciliation
and callback delivery have finished, and the books are checked against what the clients
were told and against what the ISP applied.

Two environments run side by side:

- LIVE (most payments): the documented users (`jeetenaug4` on several HashCNet V2 slugs,
  `Pradhanang` on Arrownet) over HTTP to isp-sim, which faults them; scenario users are
  never faulted, so they are not used here.
- TEST (a smaller share): TEST tokens reach the in-process sandbox, whose scenario users
  (`slow-user`, `flaky-user`, `lost-user`, `refuse-user`) produce Processing and refusals
  without faults.

Callbacks of both go to a receiver in this process (tests.receiver), which checks each
signature with the `standardwebhooks` library as it arrives, as a merchant does, with the
secret of the callback's environment. The receiver is on
loopback, which LIVE callbacks may only reach with BHUKTANI_CALLBACK_ALLOW_PRIVATE (a
staging setting, set here; tests/test_callbacks.py proves the default refuses it).

Every merchant has both tokens and the receiver as its callback URL.

What is asserted, all of it collected into `Report.problems` rather than stopping at the
first: the ledger's own invariants (tests.support.assert_books_balance); every reference a
client sent is in exactly one final state or flagged, and agrees with what the client was
told; each merchant's balance is its loads minus its Success amounts plus its refunds, in
the books and through GET /api/balance; the payments the ISP applied (/_sim/applied for
LIVE, the sandbox's table for TEST) are exactly our Success payments, same amount and
receipt; every callback owed carries its payment's final state and reached the receiver
signed.

Replaying: the seed fixes the plan (intents, merchants, credits, kill points) and the
simulator's stream of fates; which request draws which fate still follows the interleaving
of concurrent requests, so a replay runs the same plan under the same faults, not the same
schedule to the microsecond.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bhuktani import money
from bhuktani.domain import FINAL_STATES
from bhuktani.ledger import accounts as ledger
from bhuktani.merchants import service as merchants_service
from bhuktani.payments import records
from bhuktani.services import arrownet, hashcnet_v2
from bhuktani.store import Database, Row, connect
from tests.receiver import Received, Receiver, receiving
from tests.support import KEY, assert_books_balance, fast_env, free_port

SIM_KEY = "bank-sim-key"
# The exponential tail passes the gateway's ISP timeout (0.3 s) about once in a hundred
# answers: a payment applied whose answer comes too late, a status question unanswered.
FAULTS = {
    "latency-s": 0.02,
    "latency-jitter-s": 0.06,
    "latency-dist": "exponential",
    "refuse-p": 0.05,
    "error-5xx-p": 0.05,
    "garbage-p": 0.03,
    "drop-before-p": 0.05,
    "drop-after-p": 0.05,
}
# Compressed so a run takes seconds: a payment cut off by a kill is asked about after
# 2 * 0.3 + 5 s (the commit's grace), a lease left by a killed worker ends after 2 s.
GATEWAY_ENV = {
    "BHUKTANI_ISP_TIMEOUT_S": "0.3",
    "BHUKTANI_ISP_CONNECT_TIMEOUT_S": "0.5",
    "BHUKTANI_ISP_SETTLE_WINDOW_S": "1",
    "BHUKTANI_RECONCILE_BACKOFF_S": "[0.2,0.3,0.5]",
    "BHUKTANI_RECONCILE_LEASE_S": "2",
    "BHUKTANI_CALLBACK_BACKOFF_S": "[0.1,0.2,0.5]",
    # The receiver is on loopback: allowed for LIVE here, as on a staging host, so that
    # LIVE callbacks are verified at the receiver too (tests/test_callbacks.py proves
    # the default refuses them).
    "BHUKTANI_CALLBACK_ALLOW_PRIVATE": "true",
    "BHUKTANI_CALLBACK_POLL_S": "0.05",
    "BHUKTANI_CALLBACK_LEASE_S": "2",
    "BHUKTANI_CALLBACK_TIMEOUT_S": "2",
}
HASHCNET_SLUGS = ("vns", "hons", "techminds", "ultra-net", "fast-speed", "bbn-internet")
# TEST users and their weights: the scenario users give Processing and refusals.
TEST_USERS = (
    (None, 8),  # the documented user of the service
    ("slow-user", 3),
    ("flaky-user", 3),
    ("lost-user", 3),
    ("refuse-user", 2),
    ("due-user", 1),
)
RESEND_P = 0.05  # a client sends the same commit again after its answer: must be 1013
MAX_TRIES = 40  # requests per step of a payment, whatever goes wrong
UP_BOUND_S = 60.0  # how long a client waits for a killed gateway to be back
DRAIN_BOUND_S = 90.0
FINAL = set(FINAL_STATES)
MAX_PROBLEMS = 300

DETAILS = "/api/servicegroup/details/{service}/"
COMMIT = "/api/servicegroup/commit/{service}/"


@dataclass(frozen=True)
class Intent:
    """One payment a client means to make, under one reference, whatever happens."""

    reference: str
    merchant: int  # index into the run's merchants
    env: str
    service: str
    isp: str
    username: str
    package_code: int | None
    duration_code: str
    amount_paisa: int
    resend: bool


@dataclass
class Outcome:
    """What the client learned. `view` is Success, Processing, Failed, Insufficient, or
    Error (the client got no usable answer: always a problem)."""

    view: str = "Error"
    payment_id: int | None = None
    lost_answers: int = 0  # commits whose answer never came, or came as 1017
    at_once: bool = False  # the commit itself answered the final state (no callback owed)


@dataclass(frozen=True)
class Merchant:
    id: int
    live_token: str
    test_token: str
    secrets: dict[str, str]  # by environment


@dataclass
class Report:
    seed: int
    database: str
    workdir: Path
    payments: int
    test_payments: int
    clients: int
    merchants: int
    kills: int = 0
    fates: dict[str, Any] = field(default_factory=dict)
    states: dict[str, Counter[str]] = field(default_factory=dict)
    views: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    callbacks: Counter[str] = field(default_factory=Counter)
    lost_answers: int = 0
    setup_s: float = 0.0
    load_s: float = 0.0
    drain_s: float = 0.0
    total_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        states = {env: dict(sorted(c.items())) for env, c in self.states.items()}
        return "\n".join(
            [
                f"bank seed {self.seed} on {self.database}: {self.payments} LIVE + "
                f"{self.test_payments} TEST payments, {self.clients} clients, "
                f"{self.merchants} merchants, {self.kills} kills",
                f"  time: setup {self.setup_s:.1f}s, load {self.load_s:.1f}s, "
                f"drain {self.drain_s:.1f}s, "
                f"total {self.total_s:.1f}s",
                f"  isp-sim fates: {json.dumps(self.fates)}",
                f"  final states: {json.dumps(states)}",
                f"  clients were told: {json.dumps(dict(sorted(self.views.items())))}; "
                f"answers lost to kills: {self.lost_answers}",
                f"  answers: {json.dumps(dict(sorted(self.answers.items())))}",
                f"  callbacks: {json.dumps(dict(sorted(self.callbacks.items())))}",
                f"  problems: {len(self.problems)}; logs in {self.workdir}",
            ]
        )

    def failure(self) -> str:
        shown = "\n".join(f"  - {p}" for p in self.problems[:40])
        more = len(self.problems) - 40
        return (
            f"{self.summary()}\n{shown}"
            + (f"\n  … and {more} more" if more > 0 else "")
            + f"\nreplay: BHUKTANI_BANK_SEED={self.seed} BHUKTANI_TEST_DATABASES={self.database}"
            f" .venv/bin/pytest tests/test_bank.py (a soak: with its BHUKTANI_SOAK* too)"
        )


# The plan: who pays what, decided by the seed before anything runs.


def _hashcnet_prices() -> list[tuple[int, str, int]]:
    return [
        (package.code, duration.code, duration.amount_paisa)
        for package in hashcnet_v2.PACKAGES
        for duration in package.durations
    ]


def _arrownet_prices() -> list[tuple[int | None, str, int]]:
    return [(None, d.code, d.amount_paisa) for d in arrownet.PACKAGES[0].durations]


def plan(seed: int, live: int, test: int, merchants: int) -> list[Intent]:
    rng = random.Random(seed)
    hashcnet, arrownet = _hashcnet_prices(), _arrownet_prices()
    names, weights = zip(*TEST_USERS, strict=True)
    intents = []
    for index in range(live + test):
        env = "live" if index < live else "test"
        service = "arrownet" if rng.random() < 0.3 else hashcnet_v2.SLUG
        isp = "arrownet" if service == "arrownet" else rng.choice(HASHCNET_SLUGS)
        documented = "Pradhanang" if service == "arrownet" else "jeetenaug4"
        username = documented
        if env == "test":
            username = rng.choices(names, weights)[0] or documented
        package_code, duration_code, amount_paisa = rng.choice(
            arrownet if service == "arrownet" else hashcnet
        )
        intents.append(
            Intent(
                reference=f"bank-{seed}-{env}-{index}",
                merchant=rng.randrange(merchants),
                env=env,
                service=service,
                isp=isp,
                username=username,
                package_code=package_code,
                duration_code=duration_code,
                amount_paisa=amount_paisa,
                resend=rng.random() < RESEND_P,
            )
        )
    rng.shuffle(intents)
    return intents


def _spend(intents: Sequence[Intent], merchant: int, env: str) -> int:
    return sum(i.amount_paisa for i in intents if i.merchant == merchant and i.env == env)


# The processes.


def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)


async def _healthy(base_url: str, process: subprocess.Popen[bytes], bound_s: float = 30) -> None:
    deadline = time.monotonic() + bound_s
    async with httpx.AsyncClient(timeout=1) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(base_url + "/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{process.args!r} did not become healthy in {bound_s}s")


async def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    for _ in range(300):
        if process.poll() is not None:
            return
        await asyncio.sleep(0.05)
    process.kill()
    process.wait()


class GatewayProcess:
    """`bhuktani serve` on one port, killed and restarted; each life logs to its own file."""

    def __init__(self, port: int, env: dict[str, str], workdir: Path) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self._port = port
        self._env = env
        self._workdir = workdir
        self.lives = 0
        self.up = asyncio.Event()
        self._process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        command = [sys.executable, "-m", "bhuktani", "serve", "--port", str(self._port)]
        log_path = self._workdir / f"gateway-{self.lives}.log"
        self._process = _spawn(command, self._env, log_path)
        self.lives += 1

    async def ready(self) -> None:
        assert self._process is not None
        await _healthy(self.base_url, self._process)
        self.up.set()

    async def start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            await self.kill()  # a start cut short: never two servers on the port
        self.spawn()
        await self.ready()

    async def kill(self) -> None:
        assert self._process is not None
        self.up.clear()
        self._process.send_signal(signal.SIGKILL)
        while self._process.poll() is None:
            await asyncio.sleep(0.005)

    async def wait_up(self) -> None:
        await asyncio.wait_for(self.up.wait(), timeout=UP_BOUND_S)

    async def stop(self) -> None:
        self.up.clear()
        if self._process is not None:
            await _stop(self._process)


def _spawn_isp_sim(seed: int, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bhuktani", "isp-sim", "--port", str(port)]
    command += ["--api-key", SIM_KEY, "--seed", str(seed)]
    for name, value in FAULTS.items():
        command += [f"--{name}", str(value)]
    return _spawn(command, dict(os.environ), workdir / "isp-sim.log")


# The run.


@dataclass(frozen=True)
class Delivery:
    event_id: str
    fields: dict[str, str]
    signed: bool  # verified with the merchant's secret when it arrived


class Run:
    def __init__(
        self,
        seed: int,
        intents: Sequence[Intent],
        merchants: Sequence[Merchant],
        gateway: GatewayProcess,
        http: httpx.AsyncClient,
    ) -> None:
        self.seed = seed
        self.intents = list(intents)
        self.by_reference = {i.reference: i for i in intents}
        self.merchants = list(merchants)
        self.gateway = gateway
        self.http = http
        self.outcomes: dict[str, Outcome] = {}
        self.answers: Counter[str] = Counter()
        self.problems: list[str] = []
        self.deliveries: list[Delivery] = []
        self.done = 0
        self.load_over = False

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def token(self, intent: Intent) -> str:
        merchant = self.merchants[intent.merchant]
        return merchant.live_token if intent.env == "live" else merchant.test_token

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], int]:
        """POST until an HTTP answer comes: the status, the JSON body and how many
        attempts got no answer (the gateway was killed under them, or was down)."""
        lost = 0
        for _ in range(MAX_TRIES):
            try:
                response = await self.http.post(path, json=body)
            except httpx.TransportError:
                lost += 1
                await self.gateway.wait_up()
                continue
            try:
                answer = response.json()
            except ValueError:
                answer = {"unreadable": response.text[:200]}
            code = answer.get("error_code", answer.get("state", "ok"))
            self.answers[f"{path.split('/')[3]} {response.status_code} {code}"] += 1
            return response.status_code, answer, lost
        raise RuntimeError(f"{path}: no answer in {MAX_TRIES} tries")


async def _session(run: Run, intent: Intent) -> int | None:
    """A details call until it gives a session; the ISP's look-up is faulted too (1018)."""
    body = {
        "token": run.token(intent),
        "reference": intent.reference,
        "username": intent.username,
        "service_slug": intent.isp,
    }
    for _ in range(MAX_TRIES):
        status, answer, _lost = await run.post(DETAILS.format(service=intent.service), body)
        if status == 200:
            return int(answer["session_id"])
        if answer.get("error_code") != "1018":
            run.problem(f"{intent.reference}: details answered {status} {answer}")
            return None
        await asyncio.sleep(0.01)
    run.problem(f"{intent.reference}: details never gave a session")
    return None


def _commit_body(run: Run, intent: Intent, session_id: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "token": run.token(intent),
        "reference": intent.reference,
        "amount": money.format_rupees(intent.amount_paisa),
    }
    if intent.service == "arrownet":
        return body | {"username": intent.username, "duration": int(intent.duration_code)}
    return body | {
        "session_id": session_id,
        "package_code": intent.package_code,
        "duration_code": intent.duration_code,
    }


async def _commit(run: Run, intent: Intent, body: dict[str, Any]) -> Outcome:
    """The commit, retried under the SAME reference while its outcome is unknown: the
    retry gets 1013 with the payment, or executes if the first never reached the books."""
    outcome = Outcome()
    path = COMMIT.format(service=intent.service)
    for _ in range(MAX_TRIES):
        status, answer, lost = await run.post(path, body)
        outcome.lost_answers += lost
        code = answer.get("error_code")
        if status == 200 and answer.get("state") in ("Success", "Processing"):
            outcome.view, outcome.payment_id = str(answer["state"]), int(answer["id"])
            outcome.at_once = outcome.view == "Success"
            return outcome
        if code == "1013":
            if outcome.lost_answers == 0:
                run.problem(f"{intent.reference}: a fresh reference was refused with 1013")
            data = answer["error_data"]
            outcome.view, outcome.payment_id = str(data["state"]), int(data["id"])
            return outcome
        if code in ("1021", "1011"):
            outcome.view, outcome.at_once = "Failed", True
            return outcome
        if code == "1016":
            outcome.view = "Insufficient"
            return outcome
        if code == "1017":
            run.problem(f"{intent.reference}: commit answered 500 {answer.get('details')}")
            outcome.lost_answers += 1
        elif code != "1018":  # 1018: the ISP's look-up (Arrownet) failed, nothing opened
            run.problem(f"{intent.reference}: commit answered {status} {answer}")
            return outcome
        await asyncio.sleep(0.01)
    run.problem(f"{intent.reference}: commit never got an outcome")
    return outcome


async def _resend(run: Run, intent: Intent, body: dict[str, Any], outcome: Outcome) -> None:
    """The same commit again after its answer: never a second payment."""
    status, answer, _lost = await run.post(COMMIT.format(service=intent.service), body)
    data = answer.get("error_data") or {}
    if answer.get("error_code") != "1013":
        run.problem(f"{intent.reference}: a resent commit answered {status} {answer}")
    elif outcome.payment_id is not None and data.get("id") != outcome.payment_id:
        run.problem(f"{intent.reference}: resent commit names payment {data.get('id')}")
    elif outcome.view != "Processing" and data.get("state") != outcome.view:
        run.problem(f"{intent.reference}: was {outcome.view}, resent commit says {data}")


async def _pay(run: Run, intent: Intent) -> Outcome:
    session_id = None
    if intent.service == hashcnet_v2.SLUG:
        session_id = await _session(run, intent)
        if session_id is None:
            return Outcome()
    body = _commit_body(run, intent, session_id)
    outcome = await _commit(run, intent, body)
    if intent.resend and outcome.view in ("Success", "Processing", "Failed"):
        await _resend(run, intent, body, outcome)
    return outcome


async def _client(run: Run, queue: asyncio.Queue[Intent]) -> None:
    while not queue.empty():
        intent = queue.get_nowait()
        try:
            run.outcomes[intent.reference] = await _pay(run, intent)
        except Exception as exc:  # one client's surprise must not hide the others' books
            run.problem(f"{intent.reference}: client failed: {exc!r}")
            run.outcomes[intent.reference] = Outcome()
        run.done += 1


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


async def _operator(run: Run, db: Database, top_up: dict[int, int], fraction: float) -> None:
    """Mid-run credit loads, as `bhuktani credits load` does, while payments hold credits."""
    while run.done < fraction * len(run.intents) and not run.load_over:
        await asyncio.sleep(0.02)
    for index, amount_paisa in top_up.items():
        await merchants_service.load_credits(
            db, run.merchants[index].id, "live", amount_paisa, note="bank top-up"
        )


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
    the others can pay for everything they are given."""
    created, top_up = [], {}
    for index in range(count):
        live_paisa = _spend(intents, index, "live")
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
            test_credits_paisa=_spend(intents, index, "test") + 1_000_00,
        )
        created.append(
            Merchant(
                new.merchant_id,
                new.live_token,
                new.test_token,
                {env.value: secret for env, secret in new.callback_secrets.items()},
            )
        )
    return created, top_up


async def _sim_get(sim_url: str, path: str) -> Any:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(sim_url + path, headers={"Authorization": f"Bearer {SIM_KEY}"})
        response.raise_for_status()
        return response.json()


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
    env = fast_env(
        db_url,
        BHUKTANI_ISPS__HASHCNET_V2__BASE_URL=sim_url,
        BHUKTANI_ISPS__ARROWNET__BASE_URL=sim_url,
        BHUKTANI_ISPS__HASHCNET_V2__API_KEY=SIM_KEY,
        BHUKTANI_ISPS__ARROWNET__API_KEY=SIM_KEY,
        **GATEWAY_ENV,
    )
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
                stop = asyncio.Event()
                verifier = asyncio.create_task(_verify_deliveries(run, receiver, stop))
                try:
                    report.kills = await _load(run, db, clients, points, top_up, duration_bound_s)
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
                await _check(run, db, sim_url, report)
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
    bound_s: float,
) -> int:
    """The clients, the killer and the operator, until every intent has its answer and
    every kill is done; then the gateway is left up. Returns the number of kills."""
    queue: asyncio.Queue[Intent] = asyncio.Queue()
    for intent in run.intents:
        queue.put_nowait(intent)
    kills = Counter[str]()
    killer = asyncio.create_task(_killer(run, points, kills))
    operator = asyncio.create_task(_operator(run, db, top_up, fraction=0.4))
    workers = [asyncio.create_task(_client(run, queue)) for _ in range(clients)]
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


# The checks, each adding to run.problems.


async def _check(run: Run, db: Database, sim_url: str, report: Report) -> None:
    try:
        await assert_books_balance(db)
    except AssertionError as exc:
        run.problem(f"books: {exc}")
    rows = await _payment_rows(db, [m.id for m in run.merchants])
    _check_references(run, rows, report)
    await _check_balances(run, db, rows)
    report.fates = await _sim_get(sim_url, "/_sim/stats")
    applied = (await _sim_get(sim_url, "/_sim/applied"))["payments"]
    _check_applied(run, rows, "live", {int(p["payment_id"]): p for p in applied})
    _check_applied(run, rows, "test", await _sandbox_applied(db, run.merchants))
    await _check_callbacks(run, db, rows, report)


async def _payment_rows(db: Database, merchant_ids: Sequence[int]) -> list[Row]:
    rows: list[Row] = []
    async with db.transaction() as tx:
        for merchant_id in merchant_ids:
            rows += await tx.fetch(
                "SELECT id, merchant_id, env, reference, isp, state, isp_status, detail,"
                " amount_paisa, checks, flagged FROM payments WHERE merchant_id = $1",
                merchant_id,
            )
    return rows


def _key(row: Row) -> tuple[int, str, str]:
    return int(row["merchant_id"]), str(row["env"]), str(row["reference"])


def _check_references(run: Run, rows: Sequence[Row], report: Report) -> None:
    """One payment per reference, final or flagged, agreeing with what its client was told."""
    for key, count in Counter(_key(r) for r in rows).items():
        if count > 1:
            run.problem(f"{key}: {count} payments under one reference")
    by_key = {_key(r): r for r in rows}
    report.states = {"live": Counter(), "test": Counter()}
    for row in rows:
        state, flagged = str(row["state"]), bool(row["flagged"])
        report.states[str(row["env"])][f"flagged {state}" if flagged else state] += 1
        if str(row["reference"]) not in run.by_reference:
            run.problem(f"payment {row['id']}: reference {row['reference']} no client sent")
        if state not in FINAL and not (state == "Processing" and flagged):
            run.problem(f"{row['reference']}: left {state} ({row['isp_status']}), not flagged")
    for intent in run.intents:
        outcome = run.outcomes.get(intent.reference, Outcome())
        report.views[f"{intent.env} {outcome.view}"] += 1
        report.lost_answers += outcome.lost_answers
        key = (run.merchants[intent.merchant].id, intent.env, intent.reference)
        _agrees(run, intent, outcome, by_key.get(key))


def _agrees(run: Run, intent: Intent, outcome: Outcome, row: Row | None) -> None:
    told = outcome.view
    if row is None:
        if told in ("Success", "Processing", "Failed"):
            run.problem(f"{intent.reference}: the client was told {told}, no payment exists")
        return
    state = str(row["state"])
    if told == "Insufficient":
        run.problem(f"{intent.reference}: refused with 1016, yet a payment exists ({state})")
    if told in ("Success", "Failed") and state != told:
        run.problem(f"{intent.reference}: the client was told {told}, the payment is {state}")
    if outcome.payment_id is not None and outcome.payment_id != int(row["id"]):
        run.problem(f"{intent.reference}: told payment {outcome.payment_id}, is {row['id']}")
    if int(row["amount_paisa"]) != intent.amount_paisa:
        run.problem(f"{intent.reference}: amount {row['amount_paisa']} != {intent.amount_paisa}")


async def _check_balances(run: Run, db: Database, rows: Sequence[Row]) -> None:
    """Balance = loads - Success amounts + refunds, in the books and through the API."""
    for merchant in run.merchants:
        for env in ("live", "test"):
            mine = [r for r in rows if int(r["merchant_id"]) == merchant.id and r["env"] == env]
            success = sum(int(r["amount_paisa"]) for r in mine if r["state"] == "Success")
            held = sum(int(r["amount_paisa"]) for r in mine if r["state"] == "Processing")
            account, loads, refunds, debits = await _account(db, merchant.id, env)
            where = f"merchant {merchant.id} {env}"
            if debits:
                run.problem(f"{where}: {debits} paisa debited outside payments")
            expected = loads - success + refunds
            if int(account["balance_paisa"]) != expected:
                run.problem(
                    f"{where}: balance {account['balance_paisa']} != loads {loads}"
                    f" - Success {success} + refunds {refunds} = {expected}"
                )
            if int(account["held_paisa"]) != held:
                run.problem(f"{where}: held {account['held_paisa']} != flagged {held}")
            if int(account["consumed_paisa"]) != success - refunds:
                run.problem(f"{where}: consumed {account['consumed_paisa']} != {success - refunds}")
            token = merchant.live_token if env == "live" else merchant.test_token
            response = await run.http.get(
                "/api/balance", headers={"Authorization": f"Token {token}"}
            )
            shown = response.json()
            if shown.get("credits_available") != (expected - held) / 100:
                run.problem(f"{where}: API shows {shown}, available is {(expected - held) / 100}")
            if shown.get("credits_consumed") != (success - refunds) / 100:
                run.problem(f"{where}: API shows {shown}, consumed is {(success - refunds) / 100}")


async def _account(db: Database, merchant_id: int, env: str) -> tuple[Row, int, int, int]:
    """The merchant's account, and its single transfers: loads from the funding account,
    refunds from anywhere else, and debits (there should be none)."""
    async with db.transaction() as tx:
        account = await tx.fetchrow(
            "SELECT id, balance_paisa, held_paisa, consumed_paisa FROM accounts"
            " WHERE kind = 'merchant' AND env = $1 AND code = $2",
            env,
            ledger.merchant_code(merchant_id),
        )
        funding = await tx.fetchrow(
            "SELECT id FROM accounts WHERE kind = 'funding' AND env = $1 AND code = $2",
            env,
            ledger.FUNDING_CODE,
        )
        assert account is not None and funding is not None
        singles = await tx.fetch(
            "SELECT debit_account_id, credit_account_id, amount_paisa FROM transfers"
            " WHERE kind = 'single' AND (credit_account_id = $1 OR debit_account_id = $1)",
            int(account["id"]),
        )
    own, source = int(account["id"]), int(funding["id"])
    loads = refunds = debits = 0
    for t in singles:
        amount = int(t["amount_paisa"])
        if int(t["debit_account_id"]) == own:
            debits += amount
        elif int(t["debit_account_id"]) == source:
            loads += amount
        else:
            refunds += amount
    return account, loads, refunds, debits


async def _sandbox_applied(db: Database, merchants: Sequence[Merchant]) -> dict[int, Any]:
    applied: dict[int, Any] = {}
    async with db.transaction() as tx:
        for merchant in merchants:
            for row in await tx.fetch(
                "SELECT payment_id, isp, amount_paisa, receipt FROM sandbox_payments"
                " WHERE merchant_id = $1",
                merchant.id,
            ):
                applied[int(row["payment_id"])] = dict(row)
    return applied


def _check_applied(run: Run, rows: Sequence[Row], env: str, applied: dict[int, Any]) -> None:
    """What the ISP applied is exactly our Success set: none charged and not paid, none
    paid and not charged, each for the same amount and with the same receipt."""
    ours = {int(r["id"]): r for r in rows if r["env"] == env}
    success = {pid for pid, r in ours.items() if r["state"] == "Success"}
    for pid in sorted(success - set(applied)):
        row = ours[pid]
        run.problem(f"{env} {row['reference']}: Success (charged) but the ISP never applied it")
    for pid in sorted(set(applied) - success):
        found = ours.get(pid)
        what = (
            "no payment of ours" if found is None else f"{found['state']} ({found['isp_status']})"
        )
        reference = "?" if found is None else found["reference"]
        run.problem(f"{env} {reference}: the ISP applied payment {pid}, our books say {what}")
    for pid in sorted(success & set(applied)):
        row, paid = ours[pid], applied[pid]
        if int(paid["amount_paisa"]) != int(row["amount_paisa"]):
            run.problem(
                f"{env} {row['reference']}: ISP took {paid['amount_paisa']}, we {row['amount_paisa']}"
            )
        if str(paid["receipt"]) != str(row["detail"]):
            run.problem(f"{env} {row['reference']}: receipt {paid['receipt']} != {row['detail']}")
        if str(paid["isp"]) != str(row["isp"]):
            run.problem(f"{env} {row['reference']}: applied at {paid['isp']}, paid to {row['isp']}")


async def _check_callbacks(run: Run, db: Database, rows: Sequence[Row], report: Report) -> None:
    callbacks, attempts = await _callback_rows(db, run.merchants)
    by_payment: dict[int, list[Row]] = {}
    for callback in callbacks:
        by_payment.setdefault(int(callback["payment_id"]), []).append(callback)
    received: dict[str, list[Delivery]] = {}
    for delivery in run.deliveries:
        received.setdefault(delivery.event_id, []).append(delivery)
    known = {str(c["event_id"]) for c in callbacks}
    for event_id in sorted(set(received) - known):
        run.problem(f"the receiver got event {event_id!r}, which is in no outbox")
    for row in rows:
        outcome = run.outcomes.get(str(row["reference"]), Outcome())
        final = row["state"] in FINAL
        # A callback is owed when the final state came after the commit's answer: it
        # answered Processing, or was cut off and the reconciler settled the payment (it
        # asked at least once). One answered at once owes none; should the reconciler
        # have raced the commit to it (only if the commit outlived its grace), either way.
        checked = int(row["checks"]) > 0
        owed = final and (outcome.view == "Processing" or (checked and not outcome.at_once))
        found = by_payment.get(int(row["id"]), [])
        where = f"{row['env']} {row['reference']} ({row['state']}, checks {row['checks']})"
        if owed and not found:
            run.problem(f"{where}: no callback")
        if found and not owed and not (checked and outcome.at_once):
            run.problem(f"{where}: a callback for a payment answered at once")
        if len(found) > 1:
            run.problem(f"{where}: {len(found)} callbacks for one final state")
        if final and not owed and not outcome.at_once and outcome.view in FINAL:
            # Settled by the commit, whose answer the kill then lost: the client learns
            # the state by retrying (1013), never by callback (docs/API.md section 5).
            report.callbacks["none owed: final answer lost to a kill"] += 1
        for callback in found:
            _check_callback(
                run, row, callback, attempts.get(int(callback["id"]), []), received, report
            )


def _check_callback(
    run: Run,
    row: Row,
    callback: Row,
    attempts: Sequence[Row],
    received: dict[str, list[Delivery]],
    report: Report,
) -> None:
    where = f"{row['env']} {row['reference']} callback {callback['id']}"
    payload = json.loads(str(callback["payload_json"]))
    expected = {
        "reference": str(row["reference"]),
        "amount": money.format_rupees(int(row["amount_paisa"])),
        "status": str(row["state"]),
        "detail": records.describe(row),
        "response_id": str(row["id"]),
        "env": str(row["env"]),
    }
    if payload != expected:
        run.problem(f"{where}: payload {payload} != final state {expected}")
    got = received.get(str(callback["event_id"]), [])
    report.callbacks[f"{row['env']} {callback['status']}"] += 1
    report.callbacks[f"{row['env']} attempts"] += len(attempts)
    report.callbacks[f"{row['env']} requests received"] += len(got)
    if callback["status"] != "delivered" or not got:
        run.problem(f"{where}: {callback['status']}, {len(got)} requests received")
    for delivery in got:
        if not delivery.signed:
            run.problem(f"{where}: a request without a valid signature")
        if delivery.fields != payload:
            run.problem(f"{where}: received {delivery.fields}, outbox has {payload}")


async def _callback_rows(
    db: Database, merchants: Sequence[Merchant]
) -> tuple[list[Row], dict[int, list[Row]]]:
    callbacks: list[Row] = []
    attempts: dict[int, list[Row]] = {}
    async with db.transaction() as tx:
        for merchant in merchants:
            callbacks += await tx.fetch(
                "SELECT id, event_id, env, payment_id, payload_json, status, attempts"
                " FROM callbacks WHERE merchant_id = $1",
                merchant.id,
            )
            for attempt in await tx.fetch(
                "SELECT a.callback_id, a.http_status, a.error FROM callback_attempts a"
                " JOIN callbacks c ON c.id = a.callback_id WHERE c.merchant_id = $1"
                " ORDER BY a.id",
                merchant.id,
            ):
                attempts.setdefault(int(attempt["callback_id"]), []).append(attempt)
    return callbacks, attempts
