"""The clients of a bank run: each pays its intents through the API, whatever the
gateway answers or however often it is killed."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bhuktani import money
from bhuktani.services import hashcnet_v2
from tests.bank.plan import (
    CATALOGUE,
    COMMIT,
    DETAILS,
    MAX_PROBLEMS,
    MAX_TRIES,
    SINGLE_STEP,
    USE,
    Intent,
    Merchant,
    Outcome,
)
from tests.bank.processes import GatewayProcess

# A client.


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


# A catalogue group's answers when what its example pays was paid already (a bill, a
# due, a plan bought once): nothing left to pay (7000), or paid before (4000).
NOTHING_LEFT = ("4000", "7000")


class NothingLeft(Exception):
    """The example's bill, due or plan was paid by an earlier intent: nothing is held."""


async def _session(run: Run, intent: Intent) -> int | None:
    """A details call until it gives a session; the ISP's look-up is faulted too (1018)."""
    body: dict[str, Any] = {"token": run.token(intent), "reference": intent.reference}
    if intent.service in CATALOGUE:
        body |= CATALOGUE[intent.service].examples.details
    else:
        body |= {"username": intent.username, "service_slug": intent.isp}
    for _ in range(MAX_TRIES):
        status, answer, _lost = await run.post(DETAILS.format(service=intent.service), body)
        if status == 200:
            return int(answer["session_id"])
        if intent.service in CATALOGUE and answer.get("error_code") in NOTHING_LEFT:
            raise NothingLeft
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
    if intent.service in SINGLE_STEP:
        example = SINGLE_STEP[intent.service].example
        return example | body | {"username": intent.username}
    if intent.service in CATALOGUE:
        # The example says the rest, its amount included (in the group's own spelling, or
        # none where the option sets the price).
        example = CATALOGUE[intent.service].examples.commit
        return example | {
            "token": body["token"],
            "reference": body["reference"],
            "session_id": session_id,
        }
    return body | {
        "session_id": session_id,
        "package_code": intent.package_code,
        "duration_code": intent.duration_code,
    }


def _path(intent: Intent) -> str:
    if intent.service in SINGLE_STEP:
        return USE.format(service=intent.service)
    return COMMIT.format(service=intent.service)


def _view(state: str) -> str:
    """What the client was told: a Queued payment, as a Processing one, is not final."""
    return "Processing" if state == "Queued" else state


async def _commit(run: Run, intent: Intent, body: dict[str, Any]) -> Outcome:
    """The commit, retried under the SAME reference while its outcome is unknown: the
    retry gets 1013 with the payment, or executes if the first never reached the books."""
    outcome = Outcome()
    path = _path(intent)
    for _ in range(MAX_TRIES):
        status, answer, lost = await run.post(path, body)
        outcome.lost_answers += lost
        code = answer.get("error_code")
        if status == 200 and answer.get("state") in ("Success", "Processing", "Queued"):
            outcome.view, outcome.payment_id = _view(answer["state"]), int(answer["id"])
            outcome.at_once = outcome.view == "Success"
            return outcome
        if code == "1013":
            if outcome.lost_answers == 0:
                run.problem(f"{intent.reference}: a fresh reference was refused with 1013")
            data = answer["error_data"]
            outcome.view, outcome.payment_id = _view(data["state"]), int(data["id"])
            return outcome
        if code in ("1021", "1011"):
            outcome.view, outcome.at_once = "Failed", True
            return outcome
        if code == "1016":
            outcome.view = "Insufficient"
            return outcome
        if intent.service in CATALOGUE and code in NOTHING_LEFT:
            outcome.view = "Refused"
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
    status, answer, _lost = await run.post(_path(intent), body)
    data = answer.get("error_data") or {}
    if answer.get("error_code") != "1013":
        run.problem(f"{intent.reference}: a resent commit answered {status} {answer}")
    elif outcome.payment_id is not None and data.get("id") != outcome.payment_id:
        run.problem(f"{intent.reference}: resent commit names payment {data.get('id')}")
    elif outcome.view != "Processing" and _view(str(data.get("state"))) != outcome.view:
        run.problem(f"{intent.reference}: was {outcome.view}, resent commit says {data}")


async def _pay(run: Run, intent: Intent) -> Outcome:
    session_id = None
    if intent.service == hashcnet_v2.SLUG or intent.service in CATALOGUE:
        try:
            session_id = await _session(run, intent)
        except NothingLeft:
            return Outcome(view="Refused")
        if session_id is None:
            return Outcome()
    body = _commit_body(run, intent, session_id)
    outcome = await _commit(run, intent, body)
    if intent.resend and outcome.view in ("Success", "Processing", "Failed"):
        await _resend(run, intent, body, outcome)
    return outcome


async def client(run: Run, queue: asyncio.Queue[Intent]) -> None:
    while not queue.empty():
        intent = queue.get_nowait()
        try:
            run.outcomes[intent.reference] = await _pay(run, intent)
        except Exception as exc:  # one client's surprise must not hide the others' books
            run.problem(f"{intent.reference}: client failed: {exc!r}")
            run.outcomes[intent.reference] = Outcome()
        run.done += 1
