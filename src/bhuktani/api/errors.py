"""A refusal on the wire: the one envelope and the table of codes of docs/API.md section 2,
the HTTP status of each, and the refusals only HTTP makes (an unknown path, a wrong method,
a late request, a server error)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bhuktani import errors
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
    "7000": ("Unknown Error occured. Check details", "unknown_error"),
    "002": ("The reference sent is not a valid reference.", "invalid_reference"),
}


# Each refusal's code: the class's own, or the nearest class above it that has one.
CODE_OF: dict[type[Refusal], str] = {
    errors.TokenMissing: "1001",
    errors.TokenUnknown: "1002",
    errors.TokenRevoked: "1003",
    errors.TokenDisabled: "1004",
    errors.AccountDeleted: "1005",
    errors.AccountInactive: "1006",
    errors.AccountExpired: "1007",
    errors.ServiceNotEnabled: "1008",
    errors.InvalidFields: "1010",
    errors.BareRefusal: "1010",
    errors.IspRefusedField: "1011",
    errors.ReferenceMissing: "1012",
    errors.DuplicateReference: "1013",
    errors.InsufficientCredits: "1016",
    errors.ServiceUnavailable: "1018",
    errors.InMaintenance: "1019",
    errors.IspRefused: "1021",
    errors.RateLimited: "1022",
    errors.CannotFulfil: "4000",
    errors.NothingToPay: "7000",
    errors.UnknownReference: "002",
}
# Every refusal is 400 unless its code or the HTTP layer says otherwise.
HTTP_STATUS = {"1022": 429}


class ApiError(Refusal):
    """A refusal that only the HTTP layer makes, with its code and status (an unreadable
    body, an unknown path, a wrong method, a late request, a server error)."""

    def __init__(
        self,
        code: str,
        details: str,
        error_data: dict[str, Any] | None = None,
        *,
        http_status: int = 400,
    ) -> None:
        assert code in CODES, code
        super().__init__(details, error_data)
        self.code = code
        self.http_status = http_status


def code_of(error: Refusal) -> str:
    if isinstance(error, ApiError):
        return error.code
    for kind in type(error).__mro__:
        code = CODE_OF.get(kind)
        if code is not None:
            return code
    raise AssertionError(f"no code for {type(error).__name__}")


def status_of(error: Refusal) -> int:
    if isinstance(error, ApiError):
        return error.http_status
    return HTTP_STATUS.get(code_of(error), 400)


def body_of(error: Refusal) -> dict[str, Any]:
    if isinstance(error, errors.BareRefusal):
        # Its document's two fields; the code is on the request's log line only.
        return {"status": False, "detail": error.details}
    return envelope(code_of(error), error.details, error.error_data or {})


def envelope(code: str, details: str, error_data: dict[str, Any]) -> dict[str, Any]:
    """The one error envelope of docs/API.md section 2."""
    message, name = CODES[code]
    return {
        "status": False,
        "state": "Error",
        "error_code": code,
        "error": name,
        "message": message,
        "details": details,
        "error_data": error_data,
    }


def headers_of(error: Refusal) -> Mapping[str, str] | None:
    """Headers besides the envelope: Retry-After of a refusal that names a wait."""
    if not isinstance(error, errors.RateLimited):
        return None
    return {"Retry-After": str(error.retry_after_s)}


def server_error(request_id: str) -> ApiError:
    return ApiError("1017", f"Unexpected error; request id {request_id}", http_status=500)
