"""One envelope and one table of codes for every refusal (spec/API.md section 2)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# code -> (message, error)
CODES: dict[str, tuple[str, str]] = {
    "1001": ("Token not provided", "token_not_provided"),
    "1002": ("Invalid token", "token_not_found"),
    "1003": ("Deleted token is provided", "token_deleted"),
    "1004": ("Inactive token is provided", "token_inactive"),
    "1005": ("Account associated with token is deleted", "account_deleted"),
    "1006": ("Account associated with the token is inactive", "account_inactive"),
    "1007": ("Account has expired", "account_expired"),
    "1008": ("Problem using the service", "service_not_enabled"),
    "1009": ("Account doesn't have the permission", "permission_denied"),
    "1010": ("Validation error", "validation_error"),
    "1011": ("Validation error", "upstream_validation_error"),
    "1012": ("Reference id not provided", "reference_not_provided"),
    "1013": ("Request with duplicate reference id obtained", "duplicate_reference"),
    "1014": ("Parse error", "parse_error"),
    "1015": ("Parse error", "parse_error"),
    "1016": ("Insufficient user credits", "insufficient_credits"),
    "1017": ("Server error", "server_error"),
    "1018": ("Error while using service", "service_error"),
    "1019": ("Service in maintenance mode", "maintenance"),
    "1020": ("ERC for the amount could not be obtained", "erc_unavailable"),
    "1021": ("Error from Provider", "provider_error"),
    "1022": ("Too many requests", "rate_limited"),
    "4000": ("Can't fulfill request", "client_error"),
    "002": ("The reference sent is not a valid reference.", "invalid_reference"),
}

FieldErrors = dict[str, list[str]]


@dataclass
class ApiError(Exception):
    code: str
    details: str
    error_data: dict[str, Any] | None = None
    http_status: int = 400
    # Headers the refusal's response carries besides its envelope (Retry-After of a 1022).
    headers: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        assert self.code in CODES, self.code
        super().__init__(f"{self.code}: {self.details}")

    def body(self) -> dict[str, Any]:
        message, error = CODES[self.code]
        return {
            "status": False,
            "state": "Error",
            "error_code": self.code,
            "error": error,
            "message": message,
            "details": self.details,
            "error_data": self.error_data or {},
        }


def validation_error(errors: FieldErrors, *, code: str = "1010") -> ApiError:
    first_field, messages = next(iter(errors.items()))
    return ApiError(code, f"{first_field}: {messages[0]}", error_data=dict(errors))


def field_error(field: str, message: str, *, code: str = "1010") -> ApiError:
    return validation_error({field: [message]}, code=code)


def client_error(details: str) -> ApiError:
    return ApiError("4000", details)


def server_error(request_id: str) -> ApiError:
    return ApiError("1017", f"Unexpected error; request id {request_id}", http_status=500)


def retry_after_s(wait_s: float) -> int:
    """Retry-After in whole seconds (RFC 9110 section 10.2.3): never earlier than the wait,
    and at least 1. Rounded to the millisecond first, so 1.0000000001 s of float noise is
    1, not 2."""
    return max(1, math.ceil(round(wait_s, 3)))


def rate_limited(wait_s: float, details: str) -> ApiError:
    retry_after = retry_after_s(wait_s)
    return ApiError(
        "1022",
        f"{details}; retry after {retry_after} s",
        http_status=429,
        headers={"Retry-After": str(retry_after)},
    )
