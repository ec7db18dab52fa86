"""Every error the HTTP API returns is JSON: `{"error": "<code>", "detail": ...}`."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg
from aiohttp import web

from workers.logs import get_logger

log = get_logger(__name__)

# The database is away: tell the caller to come back (Stripe and our clients retry).
_DATABASE_DOWN = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
)


def json_error(status: int, error: str, detail: Any = None, **kwargs: Any) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status, **kwargs)


def _code(reason: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_")


def error_response(request: web.Request, error: Exception) -> web.StreamResponse:
    """The JSON answer for an exception a handler raised; re-raises what is not an error."""
    if isinstance(error, web.HTTPException):
        if error.status < 400:
            raise error
        return json_error(
            error.status,
            _code(error.reason),
            error.text if error.text and error.text != f"{error.status}: {error.reason}" else None,
            headers={k: v for k, v in error.headers.items() if k.lower() in ("allow", "www-authenticate")},
        )
    if isinstance(error, _DATABASE_DOWN):
        if request.transport is None or request.transport.is_closing():
            raise error  # the client went away mid-request: nothing to answer, nothing wrong
        log.warning("database unreachable", path=request.path, error=type(error).__name__)
        return json_error(503, "database_unavailable", "try again shortly", headers={"Retry-After": "5"})
    log.error("unhandled error", path=request.path, exc_info=error)
    return json_error(500, "internal_error")
