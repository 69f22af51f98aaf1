"""The plan of a bank run: who pays what, decided by the seed before anything runs;
what a client does and what it was told."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from bhuktani.books import charges
from bhuktani.books.charges import Charge
from bhuktani.domain import FINAL_STATES
from bhuktani.sandbox import catalog
from bhuktani.services import arrownet, hashcnet_v2, registry
from bhuktani.services.base import ServiceGroup
from bhuktani.services.single_step import SANDBOX_USERNAME

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
USE = "/api/use/{service}/"
SINGLE_STEP = {service.slug: service for service in registry.SINGLE_STEP}
# Single-step amounts, in whole rupees: any amount the services all take.
SINGLE_STEP_RUPEES = (100, 250, 999, 5000)
# The catalogue's other groups pay their own example: a bill, a due or a plan that can be
# bought once is refused (nothing held) or fails (refunded) when bought again.
CATALOGUE = {
    group.slug: group
    for group in registry.GROUPS
    if group.slug not in (hashcnet_v2.SLUG, arrownet.SLUG)
}


def example_price(group: ServiceGroup) -> tuple[str, int]:
    """The ISP the group's example names and the price its example commit pays there."""
    query = group.parse_details({**group.examples.details, "reference": "bank"})
    subscriber = catalog.template(query.isp, query.username)
    assert subscriber is not None, group.slug
    commit = group.parse_commit({**group.examples.commit, "reference": "bank", "session_id": 1})
    _package, duration = group.choose(subscriber, commit)
    return query.isp, duration.amount_paisa


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
    """What the client learned. `view` is Success, Processing, Failed, Insufficient,
    Refused (a catalogue example with nothing left to pay: nothing held), or Error (the
    client got no usable answer: always a problem)."""

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
    # The service charges set on it, by environment (books.charges' rules by slug).
    charges: dict[str, dict[str, Charge]] = field(default_factory=dict)

    def charge_paisa(self, env: str, service: str, isp: str, amount_paisa: int) -> int:
        charge = charges.charge_for(self.charges.get(env, {}), service, isp)
        return 0 if charge is None else charge.of(amount_paisa)


# Service charges of the run, by merchant index (merchant 0, short of credits, has none):
# a flat charge on every service in both environments; and in LIVE a percentage with a
# floor and a cap on the groups, with one ISP's own flat charge beside its group's.
FLAT_EVERYWHERE = Charge(flat_paisa=5_00)
PERCENT_LIVE = Charge(percent_bp=150, min_paisa=2_00, max_paisa=20_00)
ISP_OWN = ("vns", Charge(flat_paisa=1_00))


def charges_of(index: int) -> dict[str, dict[str, Charge]]:
    services = [group.slug for group in registry.GROUPS] + sorted(SINGLE_STEP)
    if index == 1:
        return {env: dict.fromkeys(services, FLAT_EVERYWHERE) for env in ("live", "test")}
    if index == 2:
        live = dict.fromkeys((group.slug for group in registry.GROUPS), PERCENT_LIVE)
        live[ISP_OWN[0]] = ISP_OWN[1]
        return {"live": live}
    return {}


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
        draw = rng.random()
        if draw < 0.25:
            service, isp, documented = "arrownet", "arrownet", "Pradhanang"
            package_code, duration_code, amount_paisa = rng.choice(arrownet)
        elif draw < 0.45:
            service = isp = rng.choice(sorted(SINGLE_STEP))
            documented = SANDBOX_USERNAME
            package_code, duration_code = None, ""
            amount_paisa = rng.choice(SINGLE_STEP_RUPEES) * 100
        elif draw < 0.6:
            service = rng.choice(sorted(CATALOGUE))
            isp, amount_paisa = example_price(CATALOGUE[service])
            documented, package_code, duration_code = "", None, ""
        else:
            service, isp, documented = hashcnet_v2.SLUG, rng.choice(HASHCNET_SLUGS), "jeetenaug4"
            package_code, duration_code, amount_paisa = rng.choice(hashcnet)
        username = documented
        if env == "test" and service not in CATALOGUE:
            username = rng.choices(names, weights)[0] or documented
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


def spend(
    intents: Sequence[Intent],
    merchant: int,
    env: str,
    rules: dict[str, dict[str, Charge]] | None = None,
) -> int:
    """What the merchant's intents in env would take if all were paid, charges included."""
    found = rules.get(env, {}) if rules else {}
    total = 0
    for i in intents:
        if i.merchant == merchant and i.env == env:
            charge = charges.charge_for(found, i.service, i.isp)
            total += i.amount_paisa + (0 if charge is None else charge.of(i.amount_paisa))
    return total
