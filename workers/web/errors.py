"""Every error the HTTP API returns is JSON: `{"error": "<code>", "detail": ...}`."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler

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


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.content_type == "application/json" or error.status < 400:
            raise
        return json_error(
            error.status,
            _code(error.reason),
            error.text if error.text and error.text != f"{error.status}: {error.reason}" else None,
            headers={k: v for k, v in error.headers.items() if k.lower() in ("allow", "www-authenticate")},
        )
    except _DATABASE_DOWN as error:
        log.warning("database unreachable", path=request.path, error=type(error).__name__)
        return json_error(503, "database_unavailable", "try again shortly", headers={"Retry-After": "5"})
    except Exception:
        log.exception("unhandled error", path=request.path)
        return json_error(500, "internal_error")
