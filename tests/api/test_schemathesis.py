"""The OpenAPI schema of a running `bhuktani serve`, fuzzed by schemathesis: whatever a
client sends to a documented operation (valid by the schema or not, with a valid TEST
token or without), it never gets a server error, and every refusal is the documented
error envelope (spec/API.md section 2)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from bhuktani.api.errors import CODES
from bhuktani.services import registry
from bhuktani.store import connect
from tests.support import Server, new_merchant, running_server

# The operations of spec/API.md: the service groups' details and commit, and the look-ups.
# Each service group's two calls (the registry's groups: the seeds' and any added since),
# each single-step service's one call, and the platform's look-ups.
DOCUMENTED = [
    *(
        ("POST", f"/api/servicegroup/{verb}/{group.slug}/")
        for group in registry.GROUPS
        for verb in ("details", "commit")
    ),
    *(("POST", f"/api/use/{service.slug}/") for service in registry.SINGLE_STEP),
    ("GET", "/api/service/status/"),
    ("GET", "/api/service/bulk/status/"),
    ("GET", "/api/balance/"),
    # The merchant's money.
    ("POST", "/api/credits/bydate/"),
    ("POST", "/api/public/creditrequest/"),
    ("GET", "/api/account/service-charges/"),
    ("GET", "/api/statement/"),
    ("GET", "/api/transactions/"),
    ("POST", "/api/disputes/"),
    ("GET", "/api/disputes/"),
    # The health check of load balancers and monitors.
    ("GET", "/healthz"),
]
# Calls whose Khalti document refuses in its own two fields (errors.BareRefusal).
BARE_REFUSALS = {"/api/credits/bydate/", "/api/public/creditrequest/"}
MAX_EXAMPLES = 50


@dataclass
class Api:
    server: Server
    schema: Any
    test_token: str


async def _merchant_token(db_url: str) -> str:
    db = await connect(db_url)
    try:
        return (await new_merchant(db, name="schemathesis")).test_token
    finally:
        await db.close()


def _run(coro: Any) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


@pytest.fixture(scope="module")
def api(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One server per database for the whole module: the fuzzing is many small requests."""
    log_path = tmp_path_factory.mktemp("schemathesis") / "server.log"
    # Hundreds of requests from one address, half with made-up tokens: the rate limits
    # would answer most of them 1022 and the fuzzing would stop at the door. They have
    # their own tests (tests/api/test_rate_limits.py).
    unlimited = {"BHUKTANI_AUTH_FAIL_BURST": "1000000", "BHUKTANI_RATE_BURST": "1000000"}
    with running_server(db_url, log_path, **unlimited) as server:
        token = _run(_merchant_token(db_url))
        schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
        yield Api(server, schema, token)


def test_every_documented_operation_is_in_the_openapi_schema(api: Api) -> None:
    response = httpx.get(f"{api.server.base_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    paths = response.json()["paths"]
    for method, path in DOCUMENTED:
        assert path in paths, path
        assert method.lower() in paths[path], f"{method} {path}"
    published = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    # Every published operation is one of the documented ones, so the fuzzing below
    # (parametrised by DOCUMENTED) covers the whole schema.
    assert published == set(DOCUMENTED)


def assert_bare_refusal(body: Any, where: str) -> None:
    assert isinstance(body, dict), where
    assert body.get("status") is False, where
    assert isinstance(body.get("detail"), str), where


def assert_error_envelope(body: Any, where: str) -> None:
    assert isinstance(body, dict), where
    assert body.get("status") is False, where
    assert body.get("state") == "Error", where
    code = body.get("error_code")
    assert isinstance(code, str), where
    assert code in CODES, where
    assert body.get("message") == CODES[code][0], where
    assert isinstance(body.get("details"), str), where
    assert isinstance(body.get("error_data"), dict), where


# Values the sandbox knows, laid over some generated bodies so that the fuzzing reaches
# past validation into the look-ups, sessions and payments (spec/SANDBOX.md's users).
KNOWN: dict[str, list[Any]] = {
    "service_slug": ["vns", "techminds", "airson-internet"],
    "username": ["jeetenaug4", "Pradhanang", "refuse-user", "slow-user", "flaky-user"],
    "duration": [1, 3, "6", 12],
    "duration_code": ["1", "3", "custom_2"],
    "package_code": [9, "71"],
    "amount": [999, "999.00", 1695, "1695.00", 2, "5085.00"],
    "session_id": [1, "2", 6466],
}
# And every value of the services' own examples, which the sandbox subscribers answer.
EXAMPLES = [
    *(e for group in registry.GROUPS for e in (group.examples.details, group.examples.commit)),
    *(service.example for service in registry.SINGLE_STEP),
]
for example in EXAMPLES:
    for field, value in example.items():
        if value not in KNOWN.setdefault(field, []):
            KNOWN[field].append(value)
overlays = st.fixed_dictionaries(
    {}, optional={field: st.sampled_from(values) for field, values in KNOWN.items()}
)


def with_token(case: Any, where: str, token: str) -> dict[str, str]:
    """Put the TEST token where a client would; returns extra headers for the call."""
    if where == "body" and isinstance(case.body, dict):
        case.body["token"] = token
        return {}
    if where == "header" and isinstance(case.body, dict):
        # The body's token wins over the header; a client using the header sends none.
        case.body.pop("token", None)
    if where == "query":
        case.query = {**(case.query or {}), "token": token}
        return {}
    if where == "none":
        return {}
    return {"Authorization": f"Token {token}"}


@pytest.mark.parametrize(("method", "path"), DOCUMENTED, ids=[f"{m} {p}" for m, p in DOCUMENTED])
def test_no_generated_request_gets_a_server_error(api: Api, method: str, path: str) -> None:
    operation = api.schema[path][method]
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    # Half the requests carry the merchant's valid TEST token, so that they get past
    # authentication to validation and the flows; the others keep what was generated.
    token_places = ["body", "header"] if method == "POST" else ["query", "header"]
    placement = st.one_of(st.just("none"), st.sampled_from(token_places))

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
    @given(case=cases, where=placement, overlay=st.one_of(st.just({}), overlays))
    def fuzz(case: Any, where: str, overlay: dict[str, Any]) -> None:
        if isinstance(case.body, dict):
            case.body.update(overlay)
        headers = with_token(case, where, api.test_token)
        response = case.call(base_url=api.server.base_url, headers=headers, timeout=15)
        reproduce = case.as_curl_command(headers=headers, base_url=api.server.base_url)
        detail = f"{response.status_code} {response.text[:500]}\n{reproduce}"
        assert response.status_code < 500, detail
        if 400 <= response.status_code < 500:
            try:
                body = response.json()
            except ValueError:
                pytest.fail(f"a refusal that is not JSON: {detail}")
            if path in BARE_REFUSALS and "error_code" not in body:
                assert_bare_refusal(body, detail)
            else:
                assert_error_envelope(body, detail)

    fuzz()
