"""The services' part of the OpenAPI document: each service's request models (its own
pydantic models) and the schemas of the answers it renders (api/shapes.py), named after
the service; services that answer alike share one schema."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from bhuktani.api import schemas, shapes
from bhuktani.errors import Refusal
from bhuktani.services import registry
from bhuktani.services.base import CommitView, Service, ServiceGroup
from bhuktani.services.single_step import SingleStepService


def pascal(slug: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]", slug))


def camel(slug: str) -> str:
    written = pascal(slug)
    return written[:1].lower() + written[1:]


def request_name(service: Service, verb: str) -> str:
    return f"{pascal(service.slug)}{verb.title()}Request"


# The answers each service renders: two-step groups' details and commit, single-step use.

SAMPLE_VIEWS = (
    CommitView("Success", 81234567, "RCPT-1", 169500, 98_30500, 0),
    CommitView("Processing", 81234568, "", 169550, 98_30449, 1000),
)
QUEUED_VIEWS = (
    CommitView("Queued", 81234569, "", 10000, 99_90000, 0),
    CommitView("Queued", 81234570, "", 10050, 99_89949, 500),
)
SAMPLE_SESSION_ID = 4913288027211


def rendered_group(group: ServiceGroup) -> dict[str, list[Any]]:
    """Its details of every sandbox subscriber it answers (some are there to be refused),
    the first first: the document's example."""
    session = SAMPLE_SESSION_ID if group.uses_sessions else None
    details = []
    for original in group.sandbox_subscribers:
        for subscriber in (original, shapes.fractional(original)):
            try:
                details.append(group.render_details(subscriber, session))
            except Refusal:
                continue
    assert details, f"{group.slug}: no sandbox subscriber has details"
    commits = [group.render_commit(view) for view in SAMPLE_VIEWS]
    return {"details": details, "commit": commits}


def rendered_use(service: SingleStepService) -> dict[str, list[Any]]:
    return {"use": [service.render_use(view) for view in QUEUED_VIEWS]}


def _renderings() -> Iterable[tuple[Service, dict[str, list[Any]]]]:
    for group in registry.GROUPS:
        yield group, rendered_group(group)
    for service in registry.SINGLE_STEP:
        yield service, rendered_use(service)


@functools.cache
def _answer_schemas() -> tuple[dict[tuple[str, str], str], dict[str, Any]]:
    """Each service's answer schema by (slug, verb), and the schemas by name. Services
    that render the same shape share one schema: the first such of a verb is named
    `CommitAnswer` (say), others after their first service. Rendered once a process."""
    clusters: list[tuple[str, dict[str, Any], list[str]]] = []
    for service, rendered in _renderings():
        for verb, renderings in rendered.items():
            shape = shapes.Shape()
            for rendering in renderings:
                shapes.observe(shape, rendering)
            schema = shapes.schema_of(shape, enums=frozenset({"state"}))
            same = next((c for c in clusters if c[0] == verb and c[1] == schema), None)
            if same is None:
                clusters.append((verb, schema, [service.slug]))
            else:
                same[2].append(service.slug)
    names: dict[tuple[str, str], str] = {}
    named: dict[str, Any] = {}
    for verb, schema, slugs in clusters:
        name = f"{verb.title()}Answer"
        if len(slugs) == 1 or name in named:
            name = f"{pascal(slugs[0])}{verb.title()}Answer"
        schema["description"] = f"The {verb} answer of " + ", ".join(f"`{s}`" for s in slugs)
        named[name] = schema
        names.update({(slug, verb): name for slug in slugs})
    return names, named


def answer_names() -> dict[tuple[str, str], str]:
    return _answer_schemas()[0]


def _request_schemas() -> dict[str, Any]:
    found: dict[str, Any] = {}
    models: list[tuple[Service, str, type[Any]]] = [
        *((g, "details", g.details_model) for g in registry.GROUPS),
        *((g, "commit", g.commit_model) for g in registry.GROUPS),
        *((s, "use", s.use_model) for s in registry.SINGLE_STEP),
    ]
    for service, verb, model in models:
        schema = model.model_json_schema(ref_template=schemas.REF)
        assert "$defs" not in schema, "a request model holds no other model"
        schema["title"] = request_name(service, verb)
        schema["properties"]["token"] = schemas.TOKEN_FIELD
        found[request_name(service, verb)] = schema
    return found


def components() -> dict[str, Any]:
    return _request_schemas() | _answer_schemas()[1]
