"""Refusals, by what went wrong, as every layer below the API raises them. Each says what
the client reads (`details`) and, where fields are at fault, which (`error_data`). Which
code of the API's table a refusal is, and its HTTP status, envelope and headers, is the
API's alone (api/errors.py)."""

from __future__ import annotations

import math
from typing import Any

FieldErrors = dict[str, list[str]]


class Refusal(Exception):
    def __init__(self, details: str, error_data: dict[str, Any] | None = None) -> None:
        super().__init__(details)
        self.details = details
        self.error_data = error_data

    def again(self) -> Refusal:
        """The same refusal, to raise once more (a cached one is never raised twice)."""
        return type(self)(self.details, self.error_data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.details!r})"


# The request.


class InvalidFields(Refusal):
    """Fields of the request are wrong; error_data names each with its messages."""


class BareRefusal(Refusal):
    """A refusal of a call whose document shows only `{"detail": ..., "status": false}`
    (credits by date, credit requests): answered in that shape, HTTP 400."""


class ReferenceMissing(Refusal):
    pass


class UnknownReference(Refusal):
    """A look-up names a reference this merchant never used."""


class CannotFulfil(Refusal):
    """The request is well formed but cannot be done: the session is spent, expired or
    someone else's, the subscriber is unknown."""


# Who calls.


class NothingToPay(Refusal):
    """The subscriber exists but has nothing to pay now (no pending bill): the documents
    answer it with the platform's unknown error."""


class TokenMissing(Refusal):
    pass


class TokenUnknown(Refusal):
    pass


class TokenRevoked(Refusal):
    pass


class TokenDisabled(Refusal):
    pass


class AccountDeleted(Refusal):
    pass


class AccountInactive(Refusal):
    pass


class AccountExpired(Refusal):
    pass


class RateLimited(Refusal):
    def __init__(
        self, details: str, error_data: dict[str, Any] | None = None, *, retry_after_s: int = 1
    ) -> None:
        super().__init__(details, error_data)
        self.retry_after_s = retry_after_s

    def again(self) -> Refusal:
        return RateLimited(self.details, self.error_data, retry_after_s=self.retry_after_s)


# The service.


class ServiceNotEnabled(Refusal):
    pass


class ServiceUnavailable(Refusal):
    """The ISP cannot be reached now (degraded, not configured, no answer); nothing held."""


class InMaintenance(Refusal):
    pass


# The money.


class DuplicateReference(Refusal):
    """The reference was used before; error_data carries that payment's id and state."""


class InsufficientCredits(Refusal):
    pass


# The ISP's word.


class IspRefused(Refusal):
    pass


class IspRefusedField(Refusal):
    """The ISP refused one field of the payment; error_data names it."""


def validation_error(errors: FieldErrors) -> InvalidFields:
    first_field, messages = next(iter(errors.items()))
    return InvalidFields(f"{first_field}: {messages[0]}", error_data=dict(errors))


def field_error(field: str, message: str) -> InvalidFields:
    return validation_error({field: [message]})


def retry_after_s(wait_s: float) -> int:
    """Retry-After in whole seconds (RFC 9110 section 10.2.3): never earlier than the wait,
    and at least 1. Rounded to the millisecond first, so 1.0000000001 s of float noise is
    1, not 2."""
    return max(1, math.ceil(round(wait_s, 3)))


def rate_limited(wait_s: float, details: str) -> RateLimited:
    retry_after = retry_after_s(wait_s)
    return RateLimited(f"{details}; retry after {retry_after} s", retry_after_s=retry_after)
