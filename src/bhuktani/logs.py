"""JSON lines on stdout, each carrying the request's context (request id, merchant id,
reference). Tokens are never bound to the context, and a filter blanks any value that
looks like one, in case a future log call passes a request body by mistake. The records
of the standard library's loggers (uvicorn's, asyncio's) are written as the same lines."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
import structlog

_TOKEN_LIKE = re.compile(r"TEST:[A-Za-z0-9_-]{8,}")
_SECRET_KEYS = frozenset({"token", "authorization", "api_key", "password", "secret"})


# The fields of the request (or job) being handled, merged into each of its log lines.
# One dict per request, set and reset by its middleware: binding a field is a dict update,
# not a context variable per key as structlog.contextvars does (whose clear and merge walk
# every context variable of the process, twice per request).
_FIELDS: ContextVar[dict[str, Any] | None] = ContextVar("bhuktani_log_fields", default=None)


class fields:
    """A fresh set of fields for one request or job, gone when it ends."""

    __slots__ = ("_bound", "_token")

    def __init__(self, **initial: Any) -> None:
        self._bound = initial

    def __enter__(self) -> dict[str, Any]:
        self._token = _FIELDS.set(self._bound)
        return self._bound

    def __exit__(self, *_: object) -> None:
        _FIELDS.reset(self._token)


def bind(**values: Any) -> None:
    """Add fields to every later log line of the current request or job (outside one,
    nothing: there is nothing to attach them to)."""
    bound = _FIELDS.get()
    if bound is not None:
        bound.update(values)


def _merge_fields(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    bound = _FIELDS.get()
    if bound:
        for key, value in bound.items():
            event.setdefault(key, value)
    return event


def _scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key.lower() in _SECRET_KEYS:
            event[key] = "[scrubbed]"
        elif isinstance(value, str) and _TOKEN_LIKE.search(value):
            event[key] = _TOKEN_LIKE.sub("[scrubbed]", value)
    return event


def _dumps(event: Any, **_: Any) -> str:
    return orjson.dumps(event, default=str).decode()


class _RequestLines:
    """Where request lines go, and whether they are written at all (INFO and below)."""

    stream: TextIO = sys.stdout
    enabled = True


def request_line(status: int, duration_ms: float) -> None:
    """The one line each request ends with: the same fields, order and scrubbing as a
    structlog line, written directly. Through structlog's processor chain it took ~15 %
    of the server's CPU on a details call."""
    if not _RequestLines.enabled:
        return
    event: dict[str, Any] = {"status": status, "duration_ms": duration_ms, "event": "request"}
    _merge_fields(None, "", event)
    event["level"] = "info"
    event["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    _scrub(None, "", event)
    stream = _RequestLines.stream
    stream.write(_dumps(event) + "\n")
    stream.flush()


class JsonFormatter(logging.Formatter):
    """A `logging` record as one of our lines: `event` the message, `level`, `timestamp`,
    `logger`, the request's fields, a traceback under `exception`, scrubbed alike."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {"event": record.getMessage(), "logger": record.name}
        _merge_fields(None, "", event)
        event["level"] = record.levelname.lower()
        event["timestamp"] = (
            datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z")
        )
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        _scrub(None, "", event)
        return _dumps(event)


def stdlib_log_config(level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn's loggers and every other standard one
    (the root: asyncio, libraries), so that nothing reaches the log as plain text."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    quiet = {"handlers": ["json"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "loggers": {
            "uvicorn": quiet,
            "uvicorn.error": {"level": level.upper()},
            # Request lines are our own (api.middleware), and access lines carry query
            # strings, which may carry a token.
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
        # Libraries at WARNING and above, as Python's last-resort handler wrote them: their
        # INFO lines (httpx names every callback URL) are noise, and URLs may carry secrets.
        "root": {"handlers": ["json"], "level": "WARNING"},
    }


def configure_logging(level: str = "INFO") -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    _RequestLines.stream = sys.stdout
    _RequestLines.enabled = numeric <= logging.INFO
    structlog.configure(
        processors=[
            _merge_fields,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _scrub,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
