"""`bindery stripe backfill [--since DATE]`: read Stripe's current customers (with their
card and SEPA payment methods), subscriptions, invoices and SEPA mandates through its
list endpoints into our tables.

Each object is applied as of the moment its page was fetched, under the same
per-object lock and ordering as events: an event newer than that page still wins,
an older one changes nothing. Progress is stored per resource after every page
(`stripe_sync_state`), so a run killed half-way resumes at the page it was on; a
complete run clears it.

Stripe lists payment methods per customer and type, and has no list of mandates:
a mandate is found through the succeeded SetupIntent that collected it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import stripe

from tasks.billing.objects import (
    Apply,
    apply_customer,
    apply_invoice,
    apply_mandate,
    apply_payment_method,
    apply_subscription,
    reference_id,
)
from tasks.billing.ordering import apply_in_order
from workers.db import Connection
from workers.stripe_calls import RateLimitedStripe

PAGE = 100
DONE = "done"
PAYMENT_METHOD_TYPES = ("card", "sepa_debit")
TABLES = ("customers", "payment_methods", "subscriptions", "invoices", "mandates")

Obj = dict[str, Any]
Ingest = Callable[[Connection, Obj, datetime], Awaitable[None]]


class Backfill:
    """One run. `counts` says how many objects were applied per table."""

    def __init__(self, client: stripe.StripeClient, gate: RateLimitedStripe) -> None:
        self.client = client
        self.gate = gate
        self.counts: Counter[str] = Counter(dict.fromkeys(TABLES, 0))

    async def _apply(self, conn: Connection, table: str, apply: Apply, obj: Obj, as_of: datetime) -> None:
        self.counts[table] += await apply_in_order(conn, apply, obj, source="backfill", as_of=as_of)

    async def _pages(
        self, list_objects: Callable[..., Awaitable[Any]], params: Obj, start: str | None = None
    ) -> AsyncIterator[tuple[Any, datetime]]:
        """Each page of a list, with the moment it was fetched."""
        starting_after = start
        while True:
            extra = {"starting_after": starting_after} if starting_after else {}
            fetched_at = datetime.now(UTC)
            page = await self.gate.call(list_objects, params={"limit": PAGE, **params, **extra})
            yield page, fetched_at
            if not (page.data and page.has_more):
                return
            starting_after = page.data[-1].id

    async def customer(self, conn: Connection, customer: Obj, as_of: datetime) -> None:
        await self._apply(conn, "customers", apply_customer, customer, as_of)
        for kind in PAYMENT_METHOD_TYPES:
            params = {"customer": customer["id"], "type": kind}
            async for page, _ in self._pages(self.client.v1.payment_methods.list_async, params):
                for method in page.data:
                    await self._apply(conn, "payment_methods", apply_payment_method, method.to_dict(), as_of)

    async def setup_intent(self, conn: Connection, intent: Obj, as_of: datetime) -> None:
        mandate_id = reference_id(intent.get("mandate"))
        if intent.get("status") != "succeeded" or mandate_id is None:
            return
        mandate = await self.gate.call(self.client.v1.mandates.retrieve_async, mandate_id)
        await self._apply(conn, "mandates", apply_mandate, mandate.to_dict(), as_of)

    def resources(self) -> list[tuple[str, Callable[..., Awaitable[Any]], Ingest, Obj]]:
        v1 = self.client.v1

        def plain(table: str, apply: Apply) -> Ingest:
            return lambda conn, obj, as_of: self._apply(conn, table, apply, obj, as_of)

        return [
            ("customers", v1.customers.list_async, self.customer, {}),
            (
                "subscriptions",
                v1.subscriptions.list_async,
                plain("subscriptions", apply_subscription),
                {"status": "all"},
            ),
            ("invoices", v1.invoices.list_async, plain("invoices", apply_invoice), {}),
            # After customers: a mandate's reference is copied onto its payment method.
            ("setup_intents", v1.setup_intents.list_async, self.setup_intent, {}),
        ]

    async def run(self, conn: Connection, since: datetime | None = None) -> dict[str, int]:
        created = {"created": {"gte": int(since.timestamp())}} if since is not None else {}
        for name, list_objects, ingest, filters in self.resources():
            key = f"backfill:{name}"
            position = await conn.fetchval("SELECT cursor FROM stripe_sync_state WHERE name = $1", key)
            if position == DONE:
                continue
            async for page, fetched_at in self._pages(list_objects, {**filters, **created}, position):
                async with conn.transaction():
                    for obj in page.data:
                        await ingest(conn, obj.to_dict(), fetched_at)
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
        return dict(self.counts)


async def backfill(
    conn: Connection, client: stripe.StripeClient, gate: RateLimitedStripe, since: datetime | None = None
) -> dict[str, int]:
    """Apply every listed object; return how many were applied per table."""
    return await Backfill(client, gate).run(conn, since)
