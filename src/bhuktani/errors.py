"""Refusals, as every layer raises them: a code of the API's table (docs/API.md section 2),
what went wrong, and the fields at fault. How a refusal is written on the wire - its HTTP
status, envelope and headers - is the API's alone (api/errors.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

FieldErrors = dict[str, list[str]]


@dataclass
class Refusal(Exception):
    code: str
    details: str
    error_data: dict[str, Any] | None = None
    # When the client may try again (a rate limit's 1022), in whole seconds.
    retry_after_s: int | None = None

    def __post_init__(self) -> None:
        assert self.code.isdigit(), self.code
        super().__init__(f"{self.code}: {self.details}")


def validation_error(errors: FieldErrors, *, code: str = "1010") -> Refusal:
    first_field, messages = next(iter(errors.items()))
    return Refusal(code, f"{first_field}: {messages[0]}", error_data=dict(errors))


def field_error(field: str, message: str, *, code: str = "1010") -> Refusal:
    return validation_error({field: [message]}, code=code)


def client_error(details: str) -> Refusal:
    return Refusal("4000", details)


def retry_after_s(wait_s: float) -> int:
    """Retry-After in whole seconds (RFC 9110 section 10.2.3): never earlier than the wait,
    and at least 1. Rounded to the millisecond first, so 1.0000000001 s of float noise is
    1, not 2."""
    return max(1, math.ceil(round(wait_s, 3)))


def rate_limited(wait_s: float, details: str) -> Refusal:
    retry_after = retry_after_s(wait_s)
    return Refusal("1022", f"{details}; retry after {retry_after} s", retry_after_s=retry_after)
