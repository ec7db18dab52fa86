"""The Stripe client every process uses: async (aiohttp), retrying network errors.

stripe-python retries nothing by default; `max_network_retries` makes it retry
connection errors, 409s and 5xx with backoff (and honour Stripe-Should-Retry).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import stripe
from stripe import AIOHTTPClient

from workers.db import Connection, connect
from workers.settings import Settings

NETWORK_RETRIES = 3


def make_stripe_client(settings: Settings) -> tuple[stripe.StripeClient, AIOHTTPClient]:
    """The client, and its HTTP client (close it with `await http.close_async()`)."""
    http = AIOHTTPClient()
    base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
    client = stripe.StripeClient(
        settings.stripe_api_key.get_secret_value(),
        base_addresses=base,  # type: ignore[arg-type]
        http_client=http,
        max_network_retries=NETWORK_RETRIES,
    )
    return client, http


@asynccontextmanager
async def stripe_session(settings: Settings) -> AsyncIterator[tuple[Connection, stripe.StripeClient]]:
    """A database connection and a Stripe client for one CLI command, both closed after."""
    client, http = make_stripe_client(settings)
    conn = await connect(settings.database_url)
    try:
        yield conn, client
    finally:
        await conn.close()
        await http.close_async()  # type: ignore[no-untyped-call]
