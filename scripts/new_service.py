"""`make new-service NAME=<slug> [SINGLE_STEP=1]`: a new service, ready to be filled in
from its document. Writes the service's module, its tests and a fixtures file of example
requests and answers, and adds the service's line to the registry; nothing else changes.

With SINGLE_STEP=1 the service is single-step (`POST /api/use/<slug>/`): its module
states its document's facts (request fields, username pattern, maximum amount) to
services/single_step.py, and its test pays the example and sees it queued, then settled.

The group it writes is session-less (a details call names the subscriber, a commit pays
for a duration of the current plan) and its sandbox subscriber answers the examples, so
`make test` passes at once. Then replace the wire shapes, the sandbox subscriber and the
examples with the document's, and the fixtures with the document's own JSON examples.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "src" / "bhuktani" / "services"
REGISTRY = SERVICES / "registry.py"
TESTS = ROOT / "tests" / "services"
SLUG = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")

MODULE = '''"""{title}: request models and response shapes of its service document.

Written by `make new-service`: replace the sandbox subscriber, the examples and the wire
shapes below with the document's."""

from __future__ import annotations

from typing import Any

from bhuktani import money
from bhuktani.isps.base import Duration, Package, Subscriber
from bhuktani.services.base import (
    CommitQuery,
    CommitView,
    DetailsQuery,
    Examples,
    current_plan_price,
    message_for,
)
from bhuktani.services.fields import (
    AmountPaisa,
    LooseCode,
    Reference,
    Username,
    WireModel,
    parse,
    reference_present,
)

SLUG = "{slug}"

PACKAGES = (
    Package(
        "Home 40Mbps",
        1,
        (
            Duration.in_rupees("1", "1 Month", 1200, 30),
            Duration.in_rupees("3", "3 Months", 3450, 90),
        ),
    ),
)

# The sandbox's subscriber; the scenario users of docs/SANDBOX.md are derived from it.
SANDBOX_USER = Subscriber(
    username="sandbox-subscriber",
    customer_id="5001",
    full_name="Sandbox Subscriber",
    current_plan="Home 40Mbps",
    days_remaining=12,
    has_due=False,
    accept_advance_payment=True,
    packages=PACKAGES,
)


class DetailsRequest(WireModel):
    username: Username
    reference: Reference | None = None


class CommitRequest(WireModel):
    reference: Reference
    username: Username
    amount: AmountPaisa
    duration_code: LooseCode


class {cls}:
    slug = SLUG
    title = "{title}"
    isps = (SLUG,)
    uses_sessions = False
    details_model: type[WireModel] = DetailsRequest
    commit_model: type[WireModel] = CommitRequest
    sandbox_subscribers = (SANDBOX_USER,)
    examples = Examples(
        details={{"username": "sandbox-subscriber"}},
        commit={{"username": "sandbox-subscriber", "amount": "1200.00", "duration_code": "1"}},
    )

    def parse_details(self, data: dict[str, Any]) -> DetailsQuery:
        request = parse(DetailsRequest, data)
        return DetailsQuery(isp=SLUG, username=request.username, reference=request.reference)

    def render_details(self, subscriber: Subscriber, session_id: int | None) -> dict[str, Any]:
        current = subscriber.current_package()
        return {{
            "status": True,
            "full_name": subscriber.full_name,
            "current_plan": subscriber.current_plan,
            "days_remaining": subscriber.days_remaining,
            "has_due": subscriber.has_due,
            "plans": [
                {{"duration_code": d.code, "title": d.title, "amount": money.format_rupees(d.amount_paisa)}}
                for d in (current.durations if current else ())
            ],
        }}

    def parse_commit(self, data: dict[str, Any]) -> CommitQuery:
        reference_present(data)
        request = parse(CommitRequest, data)
        return CommitQuery(
            reference=request.reference,
            amount_paisa=request.amount,
            duration_code=request.duration_code,
            isp=SLUG,
            username=request.username,
        )

    def choose(self, subscriber: Subscriber, query: CommitQuery) -> tuple[Package, Duration]:
        return current_plan_price(
            subscriber,
            query,
            duration_field="duration_code",
            no_price=f"No {{query.duration_code!r}} price for this plan",
        )

    def render_commit(self, view: CommitView) -> dict[str, Any]:
        return {{
            "status": True,
            "state": view.state,
            "message": message_for(view.state),
            "id": view.payment_id,
            "credits_consumed": money.to_rupees(view.amount_paisa),
            "credits_available": money.to_rupees(view.available_paisa),
        }}


GROUP = {cls}()
'''

SINGLE_STEP_MODULE = '''"""{title}: a single-step service (its document, "Single Step API").

Written by `make new-service SINGLE_STEP=1`: replace the request model, the username
pattern, the maximum and the example with the document's."""

from __future__ import annotations

from bhuktani.services.single_step import MobileUse, SingleStepService

SLUG = "{slug}"

GROUP = SingleStepService(
    slug=SLUG,
    title="{title}",
    use_model=MobileUse,
    example={{"username": "khaltiUser", "mobile_number": "9818766122", "amount": 100}},
    max_rupees=None,
    username_pattern=None,
)
'''

SINGLE_STEP_TEST = '''"""{title}: its example over the API on both databases, queued, then settled by the
reconciler. The request and answer are tests/services/fixtures/{module}.json."""

from __future__ import annotations

from typing import Any

from bhuktani.merchants.service import NewMerchant
from bhuktani.services.{module} import GROUP
from tests.conftest import AppClient
from tests.services.single_step import FIXTURES_OF, check_queued_then_settled

FIXTURES: dict[str, Any] = FIXTURES_OF("{module}")


def test_the_example_is_the_fixtures_request() -> None:
    assert GROUP.example == FIXTURES["use"]["request"]


async def test_the_example_is_queued_then_settled(client: AppClient, merchant: NewMerchant) -> None:
    await check_queued_then_settled(client, merchant, GROUP, FIXTURES)
'''

TEST = '''"""{title}: its examples against the sandbox subscriber, over the API, on both
databases. The requests and answers are tests/services/fixtures/{module}.json."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from bhuktani.merchants.service import NewMerchant
from bhuktani.services.{module} import GROUP
from tests.conftest import AppClient
from tests.support import assert_books_balance

FIXTURES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "{module}.json").read_text()
)
DETAILS = f"/api/servicegroup/details/{{GROUP.slug}}/"
COMMIT = f"/api/servicegroup/commit/{{GROUP.slug}}/"


def body(merchant: NewMerchant, example: dict[str, Any]) -> dict[str, Any]:
    return {{"token": merchant.test_token, "reference": f"ref-{{uuid.uuid4().hex}}", **example}}


def test_the_examples_are_the_fixtures_requests() -> None:
    assert GROUP.examples.details == FIXTURES["details"]["request"]
    assert GROUP.examples.commit == FIXTURES["commit"]["request"]


async def test_the_details_example_answers_the_sandbox_subscriber(
    client: AppClient, merchant: NewMerchant
) -> None:
    response = await client.post(DETAILS, json=body(merchant, FIXTURES["details"]["request"]))
    assert response.status_code == 200, response.text
    assert response.json() == FIXTURES["details"]["answer"]


async def test_the_commit_example_pays_and_the_details_show_it(
    client: AppClient, merchant: NewMerchant
) -> None:
    response = await client.post(COMMIT, json=body(merchant, FIXTURES["commit"]["request"]))
    assert response.status_code == 200, response.text
    answer = response.json()
    # The payment's id and the balance after it are this run's own.
    assert isinstance(answer.pop("id"), int)
    assert isinstance(answer.pop("credits_available"), float)
    expected = dict(FIXTURES["commit"]["answer"])
    del expected["id"], expected["credits_available"]
    assert answer == expected
    after = await client.post(DETAILS, json=body(merchant, FIXTURES["details"]["request"]))
    days = after.json()["days_remaining"] - FIXTURES["details"]["answer"]["days_remaining"]
    assert days > 0, "the paid plan shows on the next details call"
    await assert_books_balance(client.gateway.db)
'''


def _names(slug: str) -> tuple[str, str, str]:
    module = slug.replace("-", "_")
    title = " ".join(part.capitalize() for part in slug.split("-"))
    cls = "".join(part.capitalize() for part in slug.split("-"))
    return module, title, cls


def _single_step_fixtures(module: str) -> dict[str, object]:
    """The example and what the new service answers it, rendered by the service itself."""
    sys.path.insert(0, str(ROOT / "src"))
    from importlib import import_module

    from bhuktani.services.base import CommitView

    service = import_module(f"bhuktani.services.{module}").GROUP
    view = CommitView("Queued", 1, "", 10000, 0)
    return {"use": {"request": service.example, "answer": service.render_use(view)}}


def _fixtures(module: str) -> dict[str, object]:
    """The examples and what the new group answers them, rendered by the group itself."""
    sys.path.insert(0, str(ROOT / "src"))
    from importlib import import_module

    from bhuktani.services.base import CommitView

    group = import_module(f"bhuktani.services.{module}").GROUP
    subscriber = group.sandbox_subscribers[0]
    current = subscriber.current_package()
    assert current is not None, "the sandbox subscriber's plan is one of its packages"
    duration = next(
        d for d in current.durations if d.code == group.examples.commit["duration_code"]
    )
    view = CommitView("Success", 1, "", duration.amount_paisa, 0)
    return {
        "details": {
            "request": group.examples.details,
            "answer": group.render_details(subscriber, None),
        },
        "commit": {"request": group.examples.commit, "answer": group.render_commit(view)},
    }


def _register(module: str) -> None:
    text = REGISTRY.read_text()
    anchor = "MODULES = (\n"
    start = text.index(anchor) + len(anchor)
    end = text.index(")\n", start)
    text = text[:end] + f'    "{module}",\n' + text[end:]
    REGISTRY.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("slug", help="the service's path segment, e.g. worldlink or eastlink")
    parser.add_argument(
        "--single-step", action="store_true", help="one call, POST /api/use/<slug>/"
    )
    args = parser.parse_args()
    slug, single_step = args.slug, args.single_step
    if not SLUG.fullmatch(slug):
        parser.error("NAME is lower-case letters and digits, words joined by '-'")
    module, title, cls = _names(slug)
    paths = (
        SERVICES / f"{module}.py",
        TESTS / f"test_{module}.py",
        TESTS / "fixtures" / f"{module}.json",
    )
    taken = [str(p.relative_to(ROOT)) for p in paths if p.exists()]
    if taken or f'"{module}",' in REGISTRY.read_text():
        parser.error(f"the group {slug} exists already: {', '.join(taken) or 'registry'}")
    if single_step:
        paths[0].write_text(SINGLE_STEP_MODULE.format(slug=slug, title=title))
        paths[1].write_text(SINGLE_STEP_TEST.format(title=title, module=module))
    else:
        paths[0].write_text(MODULE.format(slug=slug, title=title, cls=cls))
        paths[1].write_text(TEST.format(title=title, module=module))
    paths[2].parent.mkdir(parents=True, exist_ok=True)
    fixtures = _single_step_fixtures(module) if single_step else _fixtures(module)
    paths[2].write_text(json.dumps(fixtures, indent=2) + "\n")
    _register(module)
    # Written as `make lint` wants them.
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", *map(str, paths[:2])], check=True)
    for path in (*paths, REGISTRY):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
