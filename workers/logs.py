"""Structured logging: JSON in production, readable console in development.

Logs carry ids, never personal data. `redact_personal_data` is the safety net for
the day someone logs the wrong field: any key that looks like personal data or a
secret is replaced (ids excepted), any value that looks like an email address is
masked, and the userinfo (user and password) of any URL is removed.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any

import structlog

REDACTED = "[redacted]"
_SENSITIVE_KEY = re.compile(
    r"mail|name|address|contact|phone|iban|vat|customer|password|passwd|token|secret|credential"
    r"|api_key|authorization|cookie|dsn|database_url|broker_url|smtp_url",
    re.IGNORECASE,
)
# The local part stops at `/` and brackets, so that a URL's scrubbed userinfo is left alone.
_EMAIL = re.compile(r"[^\s@<>\"'/\[\]]+@[^\s@<>\"']+\.[^\s@<>\"']+")
# scheme://userinfo@ : up to the last `@` of the authority (a password may hold a raw `@`).
_URL_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^/\s?#]*@", re.IGNORECASE)
# Structlog's own keys, and ids (which are what logs are for), are never redacted.
_ALWAYS_KEPT = {"event", "level", "logger", "timestamp", "exception"}


def _is_sensitive_key(key: str) -> bool:
    if key in _ALWAYS_KEPT or key.endswith(("_id", "_ids")):
        return False
    return bool(_SENSITIVE_KEY.search(key))


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _EMAIL.sub(REDACTED, _URL_USERINFO.sub(rf"\1{REDACTED}@", value))
    if isinstance(value, dict):
        return {key: REDACTED if _is_sensitive_key(str(key)) else _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


# Modules whose exception messages are written to be shown (ids and reasons only).
_OWN_MODULES = ("workers.", "tasks.", "scheduler.")
_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _exc_info(value: Any) -> _ExcInfo | None:
    if value is True:
        value = sys.exc_info()
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and len(value) == 3 and value[1] is not None:
        return value
    return None


def _describe(error: BaseException) -> str:
    kind = type(error)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if kind.__module__.startswith(_OWN_MODULES):
        return f"{name}: {error}"
    return f"{name} (message withheld: a driver or library may quote the data it choked on)"


def safe_traceback(error: BaseException) -> str:
    """The traceback of `error` and of what caused it: frames and exception types, with
    messages only for bindery's own exceptions."""
    lines: list[str] = []
    current: BaseException | None = error
    while current is not None:  # the exception, then what caused it
        frames = traceback.format_list(traceback.extract_tb(current.__traceback__))
        lines[:0] = [*frames, _describe(current) + "\n"]
        current = current.__cause__ or current.__context__
        if current is not None:
            lines[:0] = ["(which caused the following)\n"]
    return "Traceback (most recent call last):\n" + "".join(lines)


def describe_exception(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Structlog processor: an exception becomes its traceback's frames and its type,
    with the message only for bindery's own exceptions. A database error's message
    quotes the failing row ("DETAIL: Failing row contains (…)"); a rich traceback
    shows local variables: either can hold a customer's data."""
    info = _exc_info(event_dict.pop("exc_info", None))
    if info is None:
        return event_dict
    event_dict["exception"] = safe_traceback(info[1])
    return event_dict


def redact_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Structlog processor: drop sensitive fields and mask email-looking values."""
    for key in list(event_dict):
        if _is_sensitive_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def configure_logging(*, json: bool, level: int = logging.INFO) -> None:
    """Route structlog and the standard library (aiohttp, dramatiq) through one pipeline."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        describe_exception,
        redact_personal_data,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log repeats what our request metrics say, with client addresses.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
