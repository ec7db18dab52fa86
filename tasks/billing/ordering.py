"""Apply a Stripe object's state in order: the one rule every writer of our billing
tables (events, setup intents, backfill) goes through.

`stripe_objects` remembers, per object, the newest state applied. Marking a new state
there is an `INSERT … ON CONFLICT DO UPDATE … WHERE older`: it locks the object's row
until commit, so two writers of one object never apply concurrently, and it refuses a
state older than the one applied, which then changes nothing. Stripe's timestamps have
one-second resolution, so two states of the same second tie; a `Refetcher` settles a
tie by asking Stripe for the object as it is now, else the later arrival wins.

The common case costs two statements: the mark (which also closes the event) and the
apply; only a refused mark reads the row again, to tell older from tied.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tasks.billing.objects import Apply
from tasks.billing.refetch import Refetcher
from tasks.billing.tombstones import is_buried
from workers.db import Connection

# Marks the newest state applied, unless a newer one, or another of the same second, is
# there already. `$4`, when set, is the inbox event this application closes.
MARK = """
WITH closed AS (
    UPDATE stripe_events SET state = 'done', processed_at = now(), lease_until = NULL, last_error = NULL
     WHERE id = $4
)
INSERT INTO stripe_objects AS o (object_id, last_event_id, last_event_created) VALUES ($1, $2, $3)
ON CONFLICT (object_id) DO UPDATE SET last_event_id = $2, last_event_created = $3
 WHERE o.last_event_created < $3 OR o.last_event_id = $2 OR $5
RETURNING true
"""


async def apply_in_order(
    conn: Connection,
    apply: Apply,
    obj: dict[str, Any],
    *,
    source: str,
    as_of: datetime,
    refetch: Refetcher | None = None,
    event_type: str = "",
    closes_event: bool = False,
) -> bool:
    """Apply `obj` as it was at `as_of`, unless a newer state of it was applied already.

    Call inside a transaction. `source` names the writer (an event id, or "backfill");
    with `closes_event` the event `source` is marked done in the same statement. Returns
    whether it was applied: not when older, nor when the object or its customer was
    erased (`tasks.billing.tombstones`).
    """
    # An event's claim has checked already (tasks/billing/processing.py).
    if not closes_event and await is_buried(conn, obj):
        return False  # an erased customer's, or one of its objects: never applied again
    event_id = source if closes_event else None
    if not await conn.fetchval(MARK, obj["id"], source, as_of, event_id, False):
        # Refused, and the row is now locked by us: older, or a tie?
        newest = await conn.fetchval(
            "SELECT last_event_created FROM stripe_objects WHERE object_id = $1", obj["id"]
        )
        if as_of < newest:
            return False  # older than what we applied: changes nothing
        await conn.fetchval(MARK, obj["id"], source, as_of, None, True)
        if refetch is not None and refetch.wanted(event_type, tie=True):
            obj = await refetch.current(obj)
    elif refetch is not None and refetch.wanted(event_type, tie=False):
        obj = await refetch.current(obj)
    await apply(conn, obj)
    return True
