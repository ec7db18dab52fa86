"""HTTPS only: TLS served directly, or a trusted proxy that says the request came over HTTPS."""

from __future__ import annotations

import ssl

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from workers.settings import Settings
from workers.web.errors import json_error

# Orchestrator probes reach the process directly, not through the TLS proxy.
_PROBES = frozenset({"/healthz", "/readyz"})
HSTS = "max-age=63072000; includeSubDomains"


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


def forwarded_https_only(settings: Settings) -> Middleware | None:
    """Behind a proxy: refuse what the proxy says arrived over plain HTTP."""
    if not settings.trust_proxy:
        return None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        if proto != "https" and request.path not in _PROBES:
            return json_error(403, "https_required", "this API is served over HTTPS only")
        return await handler(request)

    return middleware


async def add_hsts(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Strict-Transport-Security"] = HSTS
