"""Apply a Stripe object's state in order: the one rule every writer of our billing
tables (events, setup intents, backfill) goes through.

A transaction-scoped advisory lock on the object id serialises the writers of one
object, and `stripe_objects` remembers the newest state applied: an older one changes
nothing. Stripe's timestamps have one-second resolution, so two states of the same
second tie; a `Refetcher` settles a tie by asking Stripe for the object as it is now.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tasks.billing.objects import Apply
from tasks.billing.refetch import Refetcher
from workers.db import Connection


async def apply_in_order(
    conn: Connection,
    apply: Apply,
    obj: dict[str, Any],
    *,
    source: str,
    as_of: datetime,
    refetch: Refetcher | None = None,
    event_type: str = "",
) -> bool:
    """Apply `obj` as it was at `as_of`, unless a newer state of it was applied already.

    Call inside a transaction: the advisory lock serialises every writer of this object
    until commit. `source` names the writer (an event id, or "backfill"). Returns
    whether it was applied.
    """
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", obj["id"])
    newest = await conn.fetchrow(
        "SELECT last_event_id, last_event_created FROM stripe_objects WHERE object_id = $1", obj["id"]
    )
    if newest is not None and as_of < newest["last_event_created"]:
        return False  # older than what we applied: changes nothing
    tie = newest is not None and as_of == newest["last_event_created"] and source != newest["last_event_id"]
    if refetch is not None and refetch.wanted(event_type, tie=tie):
        obj = await refetch.current(obj)
    await apply(conn, obj)
    await conn.execute(
        """
        INSERT INTO stripe_objects (object_id, last_event_id, last_event_created) VALUES ($1, $2, $3)
        ON CONFLICT (object_id) DO UPDATE SET last_event_id = $2, last_event_created = $3
        """,
        obj["id"],
        source,
        as_of,
    )
    return True
