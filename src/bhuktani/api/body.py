"""Reading a request: a bounded body, parsed as a JSON object, and the token."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from starlette.requests import Request

from bhuktani.errors import ApiError


class BodyTooLarge(Exception):
    pass


async def read_limited(request: Request, max_bytes: int) -> bytes:
    """The body, refused before parsing when it is larger than max_bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError("1010", f"Request body larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError("1010", f"Request body larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_object(raw: bytes, *, required: bool = True) -> dict[str, Any]:
    """A JSON object. Floats are read as Decimal, so an amount never passes through binary."""
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
    return underscored(data)


def underscored(data: dict[str, Any]) -> dict[str, Any]:
    """The documents write `session id`; a key with spaces is the key with underscores."""
    return {key.strip().replace(" ", "_"): value for key, value in data.items()}


def token_of(data: dict[str, Any], request: Request) -> str | None:
    """The body's token wins over the Authorization header."""
    token = data.get("token")
    if isinstance(token, str) and token:
        return token
    if token not in (None, ""):
        raise ApiError("1002", "The token must be a string")
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "token" and value.strip():
        return value.strip()
    return None
