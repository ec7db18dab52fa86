"""Structured logging: JSON in production, readable console in development.

Logs carry ids, never personal data. `redact_personal_data` is the safety net for
the day someone logs the wrong field: any key that looks like personal data or a
secret is replaced, and any value that looks like an email address is masked.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"
_SENSITIVE_KEY = re.compile(r"email|name|address|vat|password|token|secret", re.IGNORECASE)
_EMAIL = re.compile(r"[^\s@<>\"']+@[^\s@<>\"']+\.[^\s@<>\"']+")
# Structlog's own keys, and ids (which are what logs are for), are never redacted.
_ALWAYS_KEPT = {"event", "level", "logger", "timestamp", "exception"}


def _is_sensitive_key(key: str) -> bool:
    if key in _ALWAYS_KEPT or key.endswith(("_id", "_ids")):
        return False
    return bool(_SENSITIVE_KEY.search(key))


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _EMAIL.sub(REDACTED, value)
    if isinstance(value, dict):
        return {key: REDACTED if _is_sensitive_key(str(key)) else _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


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
            structlog.processors.format_exc_info if json else _identity,
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


def _identity(_logger: Any, _method: str, event_dict: Any) -> Any:
    return event_dict


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
