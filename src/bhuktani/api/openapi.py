"""The OpenAPI 3.1 document of the API (`/openapi.json`): each call's operation as the
modules that serve it describe it (`post`, `get`, given to routing.serve), and the
components they name: the platform calls' models (api/schemas.py), each service's request
models and the answers it renders (api/shapes.py), the error envelope, the two ways to
send the token."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi.routing import APIRoute

from bhuktani import __version__
from bhuktani.api import schemas, service_schemas
from bhuktani.api.errors import CODES, envelope
from bhuktani.services import registry
from bhuktani.services.base import Service, ServiceGroup
from bhuktani.services.single_step import SingleStepService

# The placeholders of the example bodies: a TEST token and a reference; and the service
# the examples of the platform calls name (the first single-step one: its slug is its ISP's).
EXAMPLE_TOKEN = "TEST:your-test-token"
EXAMPLE_REFERENCE = "order-1001"
EXAMPLE_SERVICE = registry.SINGLE_STEP[0].slug

GROUPS_TAG = "Service groups"
SINGLE_STEP_TAG = "Single-step services"
LOOKUPS_TAG = "Look-ups"
MONEY_TAG = "The merchant's money"
HEALTH_TAG = "Health"
TAGS = [
    {"name": GROUPS_TAG, "description": "Two steps: details (who, what to pay), then commit."},
    {"name": SINGLE_STEP_TAG, "description": "One call pays; the payment is Queued at once."},
    {"name": LOOKUPS_TAG, "description": "A payment's state, many at once, the balance."},
    {"name": MONEY_TAG, "description": "Statements, transactions, credits, charges, disputes."},
    {"name": HEALTH_TAG, "description": "For load balancers and monitors."},
]

TOKEN_HEADER = "TokenHeader"
TOKEN_QUERY = "TokenQuery"
SECURITY_SCHEMES = {
    TOKEN_HEADER: {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Authorization: Token <token>`. A token that starts with `TEST:` "
        "works in the sandbox, any other is LIVE. The body's `token` wins over this header.",
    },
    TOKEN_QUERY: {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The token as the `token` query parameter (GET look-ups only).",
    },
}
# A POST takes the token in its body's `token` field (no scheme of OpenAPI says "in the
# body", so the empty requirement lets it) or in the header.
POST_SECURITY: list[dict[str, list[str]]] = [{TOKEN_HEADER: []}, {}]
GET_SECURITY: list[dict[str, list[str]]] = [{TOKEN_HEADER: []}, {TOKEN_QUERY: []}]
# The codes each kind of call may answer (docs/API.md section 2), beside its own.
TOKEN_CODES = ("1001", "1002", "1003", "1004", "1005", "1006", "1007")
BODY_CODES = ("1010", "1014", "1015")
SERVICE_CODES = ("1008", "1009", "1018", "1019")
DETAILS_CODES = (*TOKEN_CODES, *BODY_CODES, *SERVICE_CODES, "1012", "4000", "7000")
COMMIT_CODES = (*DETAILS_CODES, "1011", "1013", "1016", "1021")
USE_CODES = (*TOKEN_CODES, *BODY_CODES, *SERVICE_CODES, "1012", "1013", "1016")
LOOKUP_CODES = (*TOKEN_CODES, "1010")


def _code_list(codes: Iterable[str]) -> str:
    return "\n".join(f"- `{code}` {CODES[code][0]} (`{CODES[code][1]}`)" for code in codes)


def _json(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"application/json": content}


def refusals(codes: Sequence[str], *, bare: str | None = None) -> dict[str, Any]:
    """The refusals of a call that may answer `codes` (400), too many requests (429) and a
    server error (500), each in the envelope. `bare`: the call also refuses in the two
    fields of BareRefusal, for this reason."""
    if "1010" in codes:
        example = envelope("1010", "amount: Send the amount", {"amount": ["Send it"]})
    else:
        example = envelope(codes[0], CODES[codes[0]][0], {})
    described = "Refused; nothing was done or moved. `error_code` is one of:\n\n"
    schema: dict[str, Any] = schemas.ref(schemas.ErrorEnvelope)
    if bare is not None:
        described += _code_list(codes) + f"\n\nOr, {bare}, `{{status, detail}}` alone."
        schema = {"oneOf": [schemas.ref(schemas.ErrorEnvelope), schemas.ref(schemas.BareRefusal)]}
    else:
        described += _code_list(codes)
    return {
        "400": {"description": described, "content": _json(schema, example)},
        "429": {
            "description": "Too many requests (`1022`): nothing was done; retry after "
            "`Retry-After` seconds.",
            "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
            "content": _json(
                schemas.ref(schemas.ErrorEnvelope),
                envelope("1022", "Over 100 requests a second (burst 200); retry after 1 s", {}),
            ),
        },
        "500": {
            "description": "Server error (`1017`): a commit's outcome is unknown; hold and "
            "look it up.",
            "content": _json(
                schemas.ref(schemas.ErrorEnvelope),
                envelope("1017", "Unexpected error; request id 3f2a9c", {}),
            ),
        },
    }


def _operation(
    operation_id: str,
    summary: str,
    tag: str,
    answer: dict[str, Any],
    errors: dict[str, Any],
    description: str,
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "tags": [tag],
        "responses": {"200": answer, **errors},
    }


def answer(
    schema: dict[str, Any], example: Any = None, description: str = "Done"
) -> dict[str, Any]:
    return {"description": description, "content": _json(schema, example)}


def post(
    operation_id: str,
    summary: str,
    tag: str,
    *,
    body: dict[str, Any],
    example: dict[str, Any],
    answered: dict[str, Any],
    errors: dict[str, Any],
    description: str = "",
) -> dict[str, Any]:
    """A POST call's operation: a JSON object body (its `token` field or the header)."""
    operation = _operation(operation_id, summary, tag, answered, errors, description)
    operation["security"] = POST_SECURITY
    operation["requestBody"] = {"required": True, "content": _json(body, example)}
    return operation


def get(
    operation_id: str,
    summary: str,
    tag: str,
    *,
    parameters: Sequence[dict[str, Any]],
    answered: dict[str, Any],
    errors: dict[str, Any],
    description: str = "",
) -> dict[str, Any]:
    """A look-up's operation: its fields in the query (or the same fields in a JSON
    body, which wins), the token in the header or the query."""
    read = "The fields may come in a JSON object body instead (the body wins)."
    described = f"{description}\n\n{read}" if description else read
    operation = _operation(operation_id, summary, tag, answered, errors, described)
    operation["security"] = GET_SECURITY
    operation["parameters"] = list(parameters)
    return operation


def query(
    name: str,
    schema: dict[str, Any],
    description: str,
    *,
    required: bool = False,
    example: Any = None,
) -> dict[str, Any]:
    parameter = {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }
    if example is not None:
        parameter["example"] = example
    return parameter


# Each service's operations and the names of its components.


def _request_body(verb: str, service: Service) -> dict[str, Any]:
    return schemas.ref(service_schemas.request_name(service, verb))


def _example_body(example: dict[str, Any]) -> dict[str, Any]:
    return {"token": EXAMPLE_TOKEN, "reference": EXAMPLE_REFERENCE, **example}


def group_operation(verb: str, group: ServiceGroup) -> dict[str, Any]:
    """A service group's details or commit."""
    example = group.examples.details if verb == "details" else group.examples.commit
    answered = answer(
        schemas.ref(service_schemas.answer_names()[(group.slug, verb)]),
        service_schemas.rendered_group(group)[verb][0],
        "Details: who the subscriber is, what can be paid"
        if verb == "details"
        else "Paid (`Success`), or `Processing`: hold, the outcome comes by callback or look-up",
    )
    codes = DETAILS_CODES if verb == "details" else COMMIT_CODES
    step = (
        "Who the subscriber is and what can be paid; opens the session the commit names."
        if verb == "details" and group.uses_sessions
        else "Who the subscriber is and what can be paid."
        if verb == "details"
        else "Pays: the amount must be a price the details showed, to the paisa."
    )
    return post(
        f"{service_schemas.camel(group.slug)}{verb.title()}",
        f"{group.title}: {verb}",
        GROUPS_TAG,
        body=_request_body(verb, group),
        example=_example_body(example),
        answered=answered,
        errors=refusals(codes),
        description=f"{step} Docs: docs/API.md and docs/services/.",
    )


def use_operation(service: SingleStepService) -> dict[str, Any]:
    """A single-step service's one call."""
    answered = answer(
        schemas.ref(service_schemas.answer_names()[(service.slug, "use")]),
        service_schemas.rendered_use(service)["use"][0],
        "Queued: the amount is held; the outcome comes by callback or look-up",
    )
    return post(
        f"{service_schemas.camel(service.slug)}Use",
        f"{service.title}: pay",
        SINGLE_STEP_TAG,
        body=_request_body("use", service),
        example=_example_body(service.example),
        answered=answered,
        errors=refusals(USE_CODES),
        description="Pays in one call, no details first (docs/API.md section 4b).",
    )


# The look-ups and the health check.

REFERENCE = query(
    "reference",
    {"type": "string", "maxLength": 50},
    "The payment's reference",
    required=True,
    example=EXAMPLE_REFERENCE,
)
STATUS_EXAMPLE = {
    "status": True,
    "state": "Success",
    "original_status": "Success",
    "details": "Transaction successful; ISP receipt RCPT-1",
    "reference": EXAMPLE_REFERENCE,
    "response_id": 81234567,
    "amount": 1695.0,
    "refunded": False,
    "refunded_amount": 0.0,
    "refunds": [],
}


def status_operation() -> dict[str, Any]:
    return get(
        "getPaymentStatus",
        "A payment's state",
        LOOKUPS_TAG,
        parameters=[REFERENCE],
        answered=answer(schemas.ref(schemas.PaymentStatus), STATUS_EXAMPLE),
        errors=refusals((*LOOKUP_CODES, "002")),
        description="An unknown reference (or another merchant's) is `002`.",
    )


def bulk_status_operation() -> dict[str, Any]:
    references = query(
        "references",
        {"type": "string"},
        "References, comma separated, at most 100",
        required=True,
        example=f"{EXAMPLE_REFERENCE},order-1002",
    )
    length = query(
        "reference_length",
        {"type": "integer", "minimum": 1, "maximum": 100},
        "How many references: must equal their count",
        required=True,
        example=2,
    )
    entry = {
        k: STATUS_EXAMPLE[k]
        for k in ("status", "state", "details", "reference", "response_id", "amount")
    }
    unknown = {
        "status": True,
        "state": "Error",
        "details": "Invalid reference obtained for account",
        "reference": "order-1002",
        "response_id": 0,
        "amount": 0,
    }
    example = {"status": True, "message": "Success", "detail": [entry, unknown]}
    return get(
        "getBulkStatus",
        "Many payments' states at once",
        LOOKUPS_TAG,
        parameters=[references, length],
        answered=answer(schemas.ref(schemas.BulkStatus), example),
        errors=refusals(LOOKUP_CODES),
    )


def balance_operation() -> dict[str, Any]:
    example = {"credits_consumed": 1695.0, "credits_available": 998305.0}
    return get(
        "getBalance",
        "The credits of the token's environment",
        LOOKUPS_TAG,
        parameters=[],
        answered=answer(schemas.ref(schemas.Balance), example),
        errors=refusals(LOOKUP_CODES),
    )


def health_operation() -> dict[str, Any]:
    example = {"status": "ok", "database": True, "isps": {}}
    down = {"status": "unavailable", "database": False, "isps": {}}
    return {
        "operationId": "getHealth",
        "summary": "Whether the gateway serves",
        "description": "200 while the database answers; a degraded ISP shows in `isps`.",
        "tags": [HEALTH_TAG],
        "security": [],
        "responses": {
            "200": answer(schemas.ref(schemas.Health), example, "Serving"),
            "503": answer(schemas.ref(schemas.Health), down, "The database does not answer"),
        },
    }


def document(routes: Sequence[APIRoute]) -> dict[str, Any]:
    """The whole document, from the routes serve() described. Each operation is the one
    its module wrote, as written: FastAPI's own writer drops the nulls of examples."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        assert route.openapi_extra is not None, f"{route.path} is not described"
        for method in sorted(route.methods or ()):
            paths.setdefault(route.path, {})[method.lower()] = copy.deepcopy(route.openapi_extra)
    components = schemas.components() | service_schemas.components()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bhuktani",
            "version": __version__,
            "summary": "Bill payments to Nepali ISPs, in the shapes of Khalti's service API.",
            "description": DESCRIPTION,
        },
        "tags": TAGS,
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


DESCRIPTION = """\
The wire contract is docs/API.md. Every call but the look-ups is a `POST` of a JSON object;
each path is served with and without its trailing slash.

**The token**: the body's `token` field, or the header `Authorization: Token <token>` (the
body wins). A token that starts with `TEST:` works in the sandbox; any other is LIVE.

**Money**: rupees, at most 2 decimal places, sent as JSON numbers or strings.

**Refusals** answer one envelope (`ErrorEnvelope`): HTTP 400 (nothing moved), 429 (too many
requests, `Retry-After`), 500 (hold and look the payment up). Credits by date and a credit
request refuse in their document's two fields (`BareRefusal`).
"""
