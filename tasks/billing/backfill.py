"""`bindery stripe backfill [--since DATE]`: read Stripe's current customers,
subscriptions and invoices through its list endpoints into our tables.

Each object is applied as of the moment its page was fetched, under the same
per-object lock and ordering as events: an event newer than that page still wins,
an older one changes nothing. Progress is stored per resource after every page
(`stripe_sync_state`), so a run killed half-way resumes at the page it was on; a
complete run clears it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import stripe

from tasks.billing.objects import Apply, apply_customer, apply_invoice, apply_subscription
from tasks.billing.processing import apply_in_order
from tasks.billing.stripe_calls import StripeGate
from workers.db import Connection

PAGE = 100
DONE = "done"


def _resources(
    client: stripe.StripeClient,
) -> list[tuple[str, Callable[..., Awaitable[Any]], Apply, dict[str, Any]]]:
    return [
        ("customers", client.v1.customers.list_async, apply_customer, {}),
        ("subscriptions", client.v1.subscriptions.list_async, apply_subscription, {"status": "all"}),
        ("invoices", client.v1.invoices.list_async, apply_invoice, {}),
    ]


async def backfill(
    conn: Connection, client: stripe.StripeClient, gate: StripeGate, since: datetime | None = None
) -> dict[str, int]:
    """Apply every listed object; return how many were applied per resource."""
    counts: dict[str, int] = {}
    for name, list_objects, apply, filters in _resources(client):
        key = f"backfill:{name}"
        position = await conn.fetchval("SELECT cursor FROM stripe_sync_state WHERE name = $1", key)
        counts[name] = 0
        while position != DONE:
            params: dict[str, Any] = {"limit": PAGE, **filters}
            if since is not None:
                params["created"] = {"gte": int(since.timestamp())}
            if position:
                params["starting_after"] = position
            fetched_at = datetime.now(UTC)
            page = await gate.call(list_objects, params=params)
            async with conn.transaction():
                for obj in page.data:
                    counts[name] += await apply_in_order(
                        conn, apply, obj.to_dict(), source="backfill", as_of=fetched_at
                    )
                position = page.data[-1].id if page.data and page.has_more else DONE
                await conn.execute(
                    """
                    INSERT INTO stripe_sync_state (name, cursor) VALUES ($1, $2)
                    ON CONFLICT (name) DO UPDATE SET cursor = $2, updated_at = now()
                    """,
                    key,
                    position,
                )
    await conn.execute("DELETE FROM stripe_sync_state WHERE name LIKE 'backfill:%'")
    return counts
