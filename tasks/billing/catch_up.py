"""Catch up with Stripe through its Events API: every event Stripe has that the inbox
lacks (a webhook lost, an endpoint down for longer than Stripe retries) is stored and
processed like a delivery.

The walk starts a safety margin before the newest event already caught up with (events can
be listed late) and stores each page as it goes; only at the end does the cursor move.
A crash half-way re-walks from the old cursor, and the inbox's unique event id makes
that harmless.
"""

from __future__ import annotations

import json
from datetime import timedelta

import stripe

from tasks.billing.inbox import parse_event, store_events
from workers.db import Connection
from workers.stripe_calls import RateLimitedStripe

CURSOR = "events"
MARGIN = timedelta(minutes=10)
PAGE = 100


async def catch_up_events(
    conn: Connection, client: stripe.StripeClient, gate: RateLimitedStripe
) -> list[str]:
    """Store the events Stripe has and we lack; return the ids of those newly stored."""
    cursor = await conn.fetchval("SELECT cursor FROM stripe_sync_state WHERE name = $1", CURSOR)
    since = int(cursor) - int(MARGIN.total_seconds()) if cursor else 0
    stored: list[str] = []
    newest = int(cursor) if cursor else 0
    starting_after: str | None = None
    while True:
        params: dict[str, object] = {"limit": PAGE, "created": {"gt": since}}
        if starting_after:
            params["starting_after"] = starting_after
        page = await gate.call(client.v1.events.list_async, params=params)
        if not page.data:
            break
        events = [parse_event(json.dumps(event.to_dict()).encode()) for event in page.data]
        new = await store_events(conn, events)
        stored += [event.id for event, is_new in zip(events, new, strict=True) if is_new]
        newest = max([newest, *(int(event.created.timestamp()) for event in events)])
        if not page.has_more:
            break
        starting_after = page.data[-1].id
    await conn.execute(
        """
        INSERT INTO stripe_sync_state (name, cursor) VALUES ($1, $2)
        ON CONFLICT (name) DO UPDATE SET cursor = $2, updated_at = now()
        """,
        CURSOR,
        str(newest),
    )
    return stored
