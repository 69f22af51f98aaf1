"""The JSON schema of a service group's answers, read from the answers it renders.

A group renders its details and commit answers as plain JSON values (services/), in the
shapes its document shows; it declares no answer model. The OpenAPI document describes
them by rendering each answer more than once (every sandbox subscriber, whole and
fractional prices, each state) and keeping what all the renderings agree on: a field
present in every one is required, a number that is ever fractional is a `number`, one
that never is an `integer`. Nothing here names a group."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bhuktani.isps.base import Duration, Package, Subscriber

# JSON types as JSON Schema names them, in the order a schema lists them.
TYPE_ORDER = ("object", "array", "string", "integer", "number", "boolean", "null")
MAX_DEPTH = 32


@dataclass
class Shape:
    """What the renderings of one value agree on."""

    types: set[str] = field(default_factory=set)
    # Keys of the objects seen, in the order first seen, with their shapes.
    properties: dict[str, Shape] = field(default_factory=dict)
    # Keys present in every object seen; None until an object is seen.
    required: list[str] | None = None
    items: Shape | None = None
    # Every string value seen at this place, for an enum of a state.
    strings: set[str] = field(default_factory=set)


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    assert isinstance(value, dict), type(value)
    return "object"


def observe(shape: Shape, value: Any, depth: int = 0) -> None:
    """Fold one rendered value into its shape."""
    assert depth < MAX_DEPTH, "an answer nested deeper than any document shows"
    kind = _type_of(value)
    shape.types.add(kind)
    if kind == "string":
        shape.strings.add(value)
    elif kind == "array":
        for item in value:
            shape.items = shape.items or Shape()
            observe(shape.items, item, depth + 1)
    elif kind == "object":
        keys = list(value)
        shape.required = (
            keys if shape.required is None else [k for k in shape.required if k in value]
        )
        for key, item in value.items():
            observe(shape.properties.setdefault(key, Shape()), item, depth + 1)


def schema_of(shape: Shape, *, enums: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The JSON schema of a shape. A value only ever seen as null may be anything: the
    renderings show no other. `enums` names the properties whose strings are all listed."""
    types = set(shape.types)
    if "integer" in types and "number" in types:
        types.discard("integer")
    if types <= {"null"}:
        return {}
    ordered = [t for t in TYPE_ORDER if t in types]
    schema: dict[str, Any] = {"type": ordered[0] if len(ordered) == 1 else ordered}
    if "object" in types:
        schema["properties"] = {
            key: _property(key, item, enums) for key, item in shape.properties.items()
        }
        schema["required"] = shape.required or []
    if "array" in types:
        schema["items"] = {} if shape.items is None else schema_of(shape.items, enums=enums)
    return schema


def _property(key: str, shape: Shape, enums: frozenset[str]) -> dict[str, Any]:
    schema = schema_of(shape, enums=enums)
    if key in enums and shape.types == {"string"}:
        schema["enum"] = sorted(shape.strings)
    return schema


def fractional(subscriber: Subscriber) -> Subscriber:
    """The subscriber with every price one paisa dearer: a rupee amount it renders is
    then fractional, so that a money field is told from a count."""

    def dearer(duration: Duration) -> Duration:
        return replace(duration, amount_paisa=duration.amount_paisa + 1)

    packages = tuple(
        Package(p.title, p.code, tuple(dearer(d) for d in p.durations)) for p in subscriber.packages
    )
    return replace(subscriber, packages=packages)
