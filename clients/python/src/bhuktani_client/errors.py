"""Every failure the client raises: refusals of the gateway (one class per family of codes
of the API's error table, chosen from `error_code` in one table), answers that never
arrived, callbacks that do not verify, and payments that did not become final in time."""

from __future__ import annotations

from typing import Any


class BhuktaniError(Exception):
    """The base of everything this package raises."""


class ApiError(BhuktaniError):
    """A refusal in the gateway's envelope (docs/API.md section 2).

    `error_code` is None for the two calls that answer a refusal as `{"status": false,
    "detail": ...}` alone (credits by date, credit request) and for an answer that names
    no code (an unknown path behind a proxy, say)."""

    def __init__(
        self,
        status_code: int,
        error_code: str | None,
        error: str,
        message: str,
        details: str,
        error_data: dict[str, Any],
        *,
        body: Any = None,
    ) -> None:
        super().__init__(f"{error_code or status_code} {message}: {details}")
        self.status_code = status_code
        self.error_code = error_code
        self.error = error
        self.message = message
        self.details = details
        self.error_data = error_data
        # The whole answer, as parsed.
        self.body = body


class AuthenticationError(ApiError):
    """1001-1007: no token, an unknown, revoked or disabled one, or its account is not
    usable."""


class NotFound(ApiError):
    """1008: an unknown service or path, or a service not enabled for this merchant."""


class UnknownReference(NotFound):
    """002: no payment of this merchant and environment has the reference."""


class PermissionDenied(ApiError):
    """1009: the account may not do this (a TEST token on a live-only service)."""


class ValidationError(ApiError):
    """1010/1011/1012/1014/1015: the request is malformed, a field is wrong (or refused
    by the ISP, 1011), the reference is missing. `error_data` names the fields."""


class DuplicateReference(ApiError):
    """1013: the reference was used by an earlier payment, whose id and state are in
    `error_data`."""

    @property
    def existing_id(self) -> int | None:
        found = self.error_data.get("id")
        return found if isinstance(found, int) else None

    @property
    def existing_state(self) -> str | None:
        found = self.error_data.get("state")
        return found if isinstance(found, str) else None


class InsufficientBalance(ApiError):
    """1016: the available credits do not cover the amount and its service charge."""


class ServerError(ApiError):
    """1017 (HTTP 500): something unexpected; a payment's outcome is unknown, so look it
    up by its reference before paying again."""


class ServiceUnavailable(ApiError):
    """1018/1019/1020: the ISP is not configured, degraded or in maintenance."""


class IspRefused(ApiError):
    """1021: the ISP refused or failed the payment; no money moved."""


class RateLimited(ApiError):
    """1022 (HTTP 429): nothing was done; retry after `retry_after_s` seconds."""

    def __init__(self, *args: Any, retry_after_s: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after_s = retry_after_s


class CannotFulfil(ApiError):
    """4000: well formed but cannot be done (an unknown subscriber, a spent session, a
    payment not final yet to dispute)."""


class NothingToPay(ApiError):
    """7000: the subscriber has nothing to pay now."""


# The one table from `error_code` to the class raised; a code not in it is an ApiError.
ERROR_CLASSES: dict[str, type[ApiError]] = {
    **dict.fromkeys(("1001", "1002", "1003", "1004", "1005", "1006", "1007"), AuthenticationError),
    "1008": NotFound,
    "002": UnknownReference,
    "1009": PermissionDenied,
    **dict.fromkeys(("1010", "1011", "1012", "1014", "1015"), ValidationError),
    "1013": DuplicateReference,
    "1016": InsufficientBalance,
    "1017": ServerError,
    **dict.fromkeys(("1018", "1019", "1020"), ServiceUnavailable),
    "1021": IspRefused,
    "1022": RateLimited,
    "4000": CannotFulfil,
    "7000": NothingToPay,
}


class TransportError(BhuktaniError):
    """No usable answer arrived: the connection failed, timed out or broke, or the answer
    was not the gateway's (a proxy's 502 page, say), on every attempt allowed.

    For a payment the outcome is unknown: `reference` names it, look it up with
    `status(reference)` (or call the same payment again: the same reference never pays
    twice)."""

    def __init__(self, message: str, *, reference: str | None = None) -> None:
        super().__init__(message)
        self.reference = reference


class UnreadableResponse(TransportError):
    """An answer that is not the gateway's JSON: its status and the start of its body."""

    def __init__(self, status_code: int, text: str, *, reference: str | None = None) -> None:
        super().__init__(f"HTTP {status_code} without the gateway's answer", reference=reference)
        self.status_code = status_code
        self.text = text


class WaitTimeout(BhuktaniError):
    """`wait()` gave up before the payment became final; `last_state` is what it read
    last (None if no look-up answered)."""

    def __init__(self, reference: str, last_state: str | None, polls: int) -> None:
        super().__init__(
            f"payment {reference} is not final after {polls} look-ups (last state: {last_state})"
        )
        self.reference = reference
        self.last_state = last_state
        self.polls = polls


class TooManyPages(BhuktaniError):
    """An iterator walked its bound of pages and the gateway still had more: narrow the
    filters (dates, state) rather than read an unbounded list."""

    def __init__(self, pages: int) -> None:
        super().__init__(f"more than {pages} pages: narrow the filters")
        self.pages = pages


class InvalidCallback(BhuktaniError):
    """A callback that cannot be read."""


class InvalidSignature(InvalidCallback):
    """A callback whose signature, timestamp or headers do not verify: do not act on it."""
