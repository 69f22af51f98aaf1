"""The OpenAPI document is true: a valid OpenAPI 3.1 document of exactly the calls the app
serves, whose every example is valid by its own schema, and whose answer schemas hold
for the answers the app really gives to the documented example requests, refusals
included."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from bhuktani.api import openapi, shapes
from bhuktani.api.app import create_app
from bhuktani.errors import Refusal
from bhuktani.merchants.service import NewMerchant
from bhuktani.services import registry
from tests.conftest import AppClient
from tests.support import eventually, fast_settings

METHODS = ("get", "post", "put", "patch", "delete")


def _document() -> dict[str, Any]:
    """The document of an app that is never started (describing needs no database)."""
    app = create_app(fast_settings("sqlite:///unused.db"))
    return openapi.document(app.state.documented)


DOC = _document()


def operations(doc: dict[str, Any] = DOC) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def by_id(operation_id: str) -> tuple[str, str, dict[str, Any]]:
    return next(o for o in operations() if o[2]["operationId"] == operation_id)


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def validator(pointer: str, doc: dict[str, Any] = DOC) -> Draft202012Validator:
    """A validator of the schema at `pointer`, its $refs resolved in the document."""
    root = {"$ref": pointer, "paths": doc["paths"], "components": doc["components"]}
    return Draft202012Validator(root)


def answer_errors(path: str, method: str, response: httpx.Response) -> list[str]:
    """How the answer differs from the schema the document gives for its status: an
    undocumented status or content type is a difference too."""
    responses = DOC["paths"][path][method]["responses"]
    status = str(response.status_code)
    if status not in responses:
        return [f"status {status} is not documented: {response.text[:300]}"]
    media = response.headers["content-type"].split(";")[0]
    content = responses[status].get("content", {})
    if media not in content:
        return [f"{media} is not documented for {status}"]
    if media != "application/json":
        return []
    check = validator(
        _pointer("paths", path, method, "responses", status, "content", media, "schema")
    )
    return [f"{e.json_path}: {e.message}" for e in check.iter_errors(response.json())]


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1")
    validate(DOC)


async def test_the_document_is_served_as_built_once(client: AppClient) -> None:
    first = await client.get("/openapi.json")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.json() == DOC
    assert (await client.get("/openapi.json")).content == first.content


def test_every_served_api_call_is_documented_and_nothing_else() -> None:
    app = create_app(fast_settings("sqlite:///unused.db"))
    direct: dict[str, dict[str, Any]] = app.state.direct
    served = {
        (path, method.lower())
        for path, methods in direct.items()
        if path.endswith("/")
        for method in methods
    }
    served.add(("/healthz", "get"))
    documented = {(path, method) for path, method, _ in operations()}
    assert documented == served
    # Each path without its trailing slash is the same call.
    assert {(p.rstrip("/"), m.upper()) for p, m in served if p != "/healthz"} <= {
        (p, m) for p, ms in direct.items() for m in ms
    }


def test_operation_ids_are_unique_method_names() -> None:
    ids = [operation["operationId"] for _, _, operation in operations()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", i) for i in ids), ids


def test_every_operation_documents_its_answer_and_its_refusals() -> None:
    for path, _, operation in operations():
        responses = operation["responses"]
        ok = responses["200"]["content"]["application/json"]["schema"]
        assert ok.get("$ref", "").startswith("#/components/schemas/"), (path, ok)
        if path == "/healthz":
            continue
        for status in ("400", "429", "500"):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert "ErrorEnvelope" in str(schema), (path, status)
        assert "`1001`" in responses["400"]["description"], path
        assert operation["security"], path


def test_both_ways_of_sending_the_token_are_documented() -> None:
    schemes = DOC["components"]["securitySchemes"]
    header = schemes[openapi.TOKEN_HEADER]
    assert (header["type"], header["in"], header["name"]) == ("apiKey", "header", "Authorization")
    for path, method, operation in operations():
        if method == "post":
            body = operation["requestBody"]["content"]["application/json"]
            assert body["example"]["token"] == openapi.EXAMPLE_TOKEN, path
            schema = DOC["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[1]]
            token = schema["properties"]["token"]
            assert token["type"] == "string", path
            assert "Authorization: Token <token>" in token["description"], path


def _examples() -> Iterator[tuple[str, str, Any]]:
    """(where, schema pointer, example) for every example of the document."""
    for path, method, operation in operations():
        base = ("paths", path, method)
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            yield (
                f"{method} {path} body",
                _pointer(*base, "requestBody", "content", "application/json", "schema"),
                body["example"],
            )
        for i, parameter in enumerate(operation.get("parameters", [])):
            if "example" in parameter:
                yield (
                    f"{method} {path} {parameter['name']}",
                    _pointer(*base, "parameters", str(i), "schema"),
                    parameter["example"],
                )
        for status, response in operation["responses"].items():
            content = response.get("content", {}).get("application/json")
            if content is not None and "example" in content:
                yield (
                    f"{method} {path} {status}",
                    _pointer(*base, "responses", status, "content", "application/json", "schema"),
                    content["example"],
                )


def test_every_example_is_valid_by_its_schema() -> None:
    found = list(_examples())
    assert len(found) > 3 * len(list(operations()))
    wrong = [
        f"{where}: {e.message}"
        for where, pointer, example in found
        for e in validator(pointer).iter_errors(example)
    ]
    assert wrong == []


def test_a_schema_that_lies_is_caught() -> None:
    """The check above can fail: an answer example with a field of the wrong type."""
    path, method, _ = by_id("getBalance")
    pointer = _pointer(
        "paths", path, method, "responses", "200", "content", "application/json", "schema"
    )
    assert list(
        validator(pointer).iter_errors({"credits_consumed": "1.00", "credits_available": 1.0})
    )


# The documented requests, sent to the app.


def _request(operation: dict[str, Any], token: str, **fields: Any) -> dict[str, Any]:
    example = dict(operation["requestBody"]["content"]["application/json"]["example"])
    example["token"] = token
    if "reference" in example:
        example["reference"] = f"oa-{uuid.uuid4().hex[:16]}"
    return example | fields


async def _send(
    client: AppClient, path: str, method: str, body: Any = None, **kwargs: Any
) -> httpx.Response:
    if method == "post":
        return await client.post(path, json=body, **kwargs)
    return await client.get(path, **kwargs)


def _group_ops(slug: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {
        verb: next(o for o in operations() if o[0] == f"/api/servicegroup/{verb}/{slug}/")
        for verb in ("details", "commit")
    }


@pytest.mark.parametrize("slug", [g.slug for g in registry.GROUPS])
async def test_a_group_answers_its_documented_examples_as_documented(
    client: AppClient, merchant: NewMerchant, slug: str
) -> None:
    ops = _group_ops(slug)
    path, method, details_op = ops["details"]
    details = await _send(client, path, method, _request(details_op, merchant.test_token))
    assert details.status_code == 200, details.text
    assert answer_errors(path, method, details) == []
    path, method, commit_op = ops["commit"]
    body = _request(commit_op, merchant.test_token)
    if "session_id" in body:
        body["session_id"] = details.json()["session_id"]
    commit = await _send(client, path, method, body)
    assert commit.status_code == 200, commit.text
    assert answer_errors(path, method, commit) == []
    # The same reference again: a refusal, in the documented envelope.
    again = await _send(client, path, method, body)
    assert again.status_code == 400 and again.json()["error_code"] == "1013"
    assert answer_errors(path, method, again) == []


@pytest.mark.parametrize("slug", [s.slug for s in registry.SINGLE_STEP])
async def test_a_single_step_service_answers_its_documented_example_as_documented(
    client: AppClient, merchant: NewMerchant, slug: str
) -> None:
    path, method, operation = next(o for o in operations() if o[0] == f"/api/use/{slug}/")
    response = await _send(client, path, method, _request(operation, merchant.test_token))
    assert response.status_code == 200, response.text
    assert answer_errors(path, method, response) == []


def _query(operation: dict[str, Any], **values: Any) -> dict[str, Any]:
    """The documented parameters' examples, `values` over them."""
    found = {p["name"]: p["example"] for p in operation.get("parameters", []) if "example" in p}
    return found | values


async def test_the_platform_calls_answer_their_documented_examples_as_documented(
    client: AppClient, merchant: NewMerchant
) -> None:
    token = merchant.test_token
    auth = {"Authorization": f"Token {token}"}
    called: set[str] = set()

    async def call(operation_id: str, *, body: Any = None, **query: Any) -> httpx.Response:
        path, method, operation = by_id(operation_id)
        params = _query(operation, **query) if method == "get" else None
        response = await _send(client, path, method, body, params=params, headers=auth)
        assert response.status_code == 200, (operation_id, response.text)
        assert answer_errors(path, method, response) == [], operation_id
        called.add(operation_id)
        return response

    # A payment to look up and dispute, made by a documented example, settled by the
    # sandbox within a second.
    path, method, use = next(o for o in operations() if o[0].startswith("/api/use/"))
    paid = await _send(client, path, method, _request(use, token))
    reference = (await client.get("/api/transactions/", headers=auth)).json()["results"][0][
        "reference"
    ]
    assert paid.status_code == 200

    async def settled() -> bool:
        answer = await client.get(
            "/api/service/status/", params={"reference": reference}, headers=auth
        )
        return bool(answer.json()["state"] == "Success")

    await eventually(settled)
    await call("getPaymentStatus", reference=reference)
    await call("getBulkStatus", references=f"{reference},no-such-ref", reference_length=2)
    await call("getBalance")
    await call("getCreditsByDate", body=_request(by_id("getCreditsByDate")[2], token))
    await call("getStatement", date=date.today().isoformat())
    csv = await call("getStatement", date=date.today().isoformat(), format="csv")
    assert csv.text.startswith("time,kind,")
    listed = await call("listTransactions")
    assert listed.json()["results"]
    await call("requestCredit", body=_request(by_id("requestCredit")[2], token))
    await call("getServiceCharge")
    raised = _request(by_id("raiseDispute")[2], token, reference=reference)
    await call("raiseDispute", body=raised)
    assert (await call("listDisputes")).json()["results"]
    health = await client.get("/healthz")
    assert answer_errors("/healthz", "get", health) == []
    called.add("getHealth")
    service_calls = {
        o["operationId"]
        for p, _, o in operations()
        if p.startswith(("/api/servicegroup/", "/api/use/"))
    }
    assert called == {o["operationId"] for _, _, o in operations()} - service_calls


@pytest.fixture
async def loose_client(db_url: str) -> AsyncIterator[AppClient]:
    """The app with no limit on failed authentications: every call is refused once."""
    app = create_app(fast_settings(db_url, auth_fail_burst=1_000_000))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AppClient(transport=transport, base_url="http://gateway") as http:
            http.gateway = app.state.gateway
            yield http


async def test_every_refusal_is_the_documented_envelope(loose_client: AppClient) -> None:
    """A wrong token on every call, and a body that is not JSON on every POST."""
    for path, method, _ in operations():
        if path == "/healthz":
            continue
        bad = {"Authorization": "Token TEST:no-such-token"}
        body: dict[str, Any] | None = {} if method == "post" else None
        response = await _send(loose_client, path, method, body, headers=bad)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error_code"] == "1002", path
        assert answer_errors(path, method, response) == [], path
        if method == "post":
            broken = await loose_client.post(path, content=b"{not json", headers=bad)
            assert broken.status_code == 400, path
            assert answer_errors(path, method, broken) == [], path


def test_a_shape_keeps_what_every_rendering_agrees_on() -> None:
    """A field missing from one rendering is optional; a number fractional in one is a
    `number`; one never seen but as null may be anything."""
    shape = shapes.Shape()
    for rendering in ({"price": 999, "count": 2, "gone": None}, {"price": 999.5, "count": 3}):
        shapes.observe(shape, rendering)
    schema = shapes.schema_of(shape)
    assert schema["required"] == ["price", "count"]
    assert schema["properties"] == {
        "price": {"type": "number"},
        "count": {"type": "integer"},
        "gone": {},
    }


@pytest.mark.parametrize("group", registry.GROUPS, ids=lambda g: g.slug)
def test_a_group_details_schema_holds_for_prices_in_paisa(group: Any) -> None:
    """The sandbox's prices are whole rupees; a LIVE ISP's may have paisa. The documented
    details hold for every sandbox subscriber with every price a paisa dearer."""
    path, method, _ = _group_ops(group.slug)["details"]
    check = validator(
        _pointer("paths", path, method, "responses", "200", "content", "application/json", "schema")
    )
    rendered = []
    for subscriber in group.sandbox_subscribers:
        try:
            rendered.append(group.render_details(shapes.fractional(subscriber), 17))
        except Refusal:
            continue
    assert rendered
    assert [e.message for r in rendered for e in check.iter_errors(r)] == []
