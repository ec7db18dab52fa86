"""Which Stripe objects are an account's: what erasure buries and deletes, what the
access export lists the inbox events of."""

from __future__ import annotations

import asyncpg

from workers.db import Connection

# In our tables, and in the inbox (a detached payment method is in no table any more,
# and its events no longer name the customer in `customer`).
OWNED_OBJECTS = """
    SELECT id FROM subscriptions WHERE account_id = $1 OR customer_id = $2
    UNION SELECT id FROM payment_methods WHERE account_id = $1 OR customer_id = $2
    UNION SELECT m.id FROM mandates m JOIN payment_methods p ON p.id = m.payment_method_id
           WHERE p.account_id = $1 OR p.customer_id = $2
    UNION SELECT id FROM invoices WHERE account_id = $1 OR customer_id = $2
    UNION SELECT object_id FROM stripe_events
           WHERE coalesce(payload #>> '{data,object,customer}', object_id) = $2 AND object_id <> $2
    UNION SELECT object_id FROM stripe_events WHERE payload #>> '{data,previous_attributes,customer}' = $2
"""


async def owned_objects(
    conn: asyncpg.Pool | Connection, account_id: int, customer_id: str | None
) -> list[str]:
    """Ids of the Stripe objects linked to the account or its customer, sorted."""
    rows = await conn.fetch(OWNED_OBJECTS, account_id, customer_id)
    return sorted({row["id"] for row in rows if row["id"]})


async def stripe_ids(conn: asyncpg.Pool | Connection, account_id: int, customer_id: str | None) -> list[str]:
    """The account's Stripe customer and the ids of its objects, sorted: what the data
    map's statements about Stripe (the inbox, the ordering marks) take."""
    objects = await owned_objects(conn, account_id, customer_id)
    return sorted({*objects, *([customer_id] if customer_id else [])})
