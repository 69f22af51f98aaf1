"""A refusal on the wire: the one envelope and the table of codes of docs/API.md section 2,
the HTTP status of each, and the refusals only HTTP makes (an unknown path, a wrong method,
a late request, a server error)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bhuktani.errors import Refusal

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


# Every refusal is 400 unless its code or the HTTP layer says otherwise.
HTTP_STATUS = {"1022": 429}


@dataclass
class ApiError(Refusal):
    """A refusal that only the HTTP layer makes, with its own status."""

    http_status: int = 400


def status_of(error: Refusal) -> int:
    if isinstance(error, ApiError):
        return error.http_status
    return HTTP_STATUS.get(error.code, 400)


def body_of(error: Refusal) -> dict[str, Any]:
    message, name = CODES[error.code]
    return {
        "status": False,
        "state": "Error",
        "error_code": error.code,
        "error": name,
        "message": message,
        "details": error.details,
        "error_data": error.error_data or {},
    }


def headers_of(error: Refusal) -> Mapping[str, str] | None:
    """Headers besides the envelope: Retry-After of a refusal that names a wait."""
    if error.retry_after_s is None:
        return None
    return {"Retry-After": str(error.retry_after_s)}


def server_error(request_id: str) -> ApiError:
    return ApiError("1017", f"Unexpected error; request id {request_id}", http_status=500)
