"""HTTPS only: TLS served directly, or a trusted proxy that says the request came over HTTPS."""

from __future__ import annotations

import ipaddress
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
    """Behind a proxy: refuse what did not come through a trusted proxy over HTTPS.

    X-Forwarded-Proto is believed only from a peer in TRUSTED_PROXIES (anyone reaching the
    port directly can write the header), and only its last value, the one the nearest
    proxy set: earlier ones may be the client's own."""
    if not settings.trust_proxy:
        return None
    proxies = [ipaddress.ip_network(network, strict=False) for network in settings.trusted_proxies]

    def through_trusted_proxy_over_https(request: web.Request) -> bool:
        try:
            peer = ipaddress.ip_address(request.remote or "")
        except ValueError:
            return False
        if not any(peer in network for network in proxies):
            return False
        values = [
            value for header in request.headers.getall("X-Forwarded-Proto", []) for value in header.split(",")
        ]
        return bool(values) and values[-1].strip().lower() == "https"

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in _PROBES and not through_trusted_proxy_over_https(request):
            return json_error(403, "https_required", "this API is served over HTTPS only")
        return await handler(request)

    return middleware


async def add_hsts(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Strict-Transport-Security"] = HSTS
