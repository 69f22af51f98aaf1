"""Reading a request: a bounded body, parsed as a JSON object, and the token."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from starlette.requests import Request

from bhuktani.api.errors import ApiError
from bhuktani.errors import InvalidFields, Refusal, TokenUnknown


class BodyTooLarge(Exception):
    pass


async def read_limited(request: Request, max_bytes: int) -> bytes:
    """The body, refused before parsing when it is larger than max_bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise InvalidFields(f"Request body larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise InvalidFields(f"Request body larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _nul_error() -> Refusal:
    return InvalidFields("A NUL character is not allowed anywhere in a request")


def _has_nul(data: dict[str, Any]) -> bool:
    """Whether a parsed JSON value carries a NUL in any string, keys included; a loop over
    a stack, not recursion, since a body may nest as deep as the parser allowed."""
    stack: list[Any] = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def parse_object(raw: bytes, *, required: bool = True) -> dict[str, Any]:
    """A JSON object. Floats are read as Decimal, so an amount never passes through binary.
    A NUL anywhere is a 1010 (PostgreSQL cannot store or compare it in text): the raw bytes
    are searched once, and the parsed strings only when the escape \\u0000 is there."""
    if b"\x00" in raw:
        raise _nul_error()
    if not raw.strip():
        if required:
            raise ApiError("1014", "The body is empty; send a JSON object")
        return {}
    try:
        data = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ApiError("1014", "The body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError("1015", "The body must be a JSON object")
    if b"\\u0000" in raw and _has_nul(data):
        raise _nul_error()
    return underscored(data)


def query_object(request: Request) -> dict[str, Any]:
    """The query string's fields, under the same NUL rule as a body."""
    fields = request.query_params
    if any("\x00" in key or "\x00" in value for key, value in fields.multi_items()):
        raise _nul_error()
    return underscored(dict(fields))


def underscored(data: dict[str, Any]) -> dict[str, Any]:
    """The documents write `session id`; a key with spaces is the key with underscores."""
    return {key.strip().replace(" ", "_"): value for key, value in data.items()}


def token_of(data: dict[str, Any], request: Request) -> str | None:
    """The body's token wins over the Authorization header."""
    token = data.get("token")
    if isinstance(token, str) and token:
        return token
    if token not in (None, ""):
        raise TokenUnknown("The token must be a string")
    header = request.headers.get("authorization", "")
    if "\x00" in header:
        raise _nul_error()
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "token" and value.strip():
        return value.strip()
    return None
