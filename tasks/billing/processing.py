"""Apply one inbox event: claimed with a lease, serialised per Stripe object, in order.

Two events of the same object never apply concurrently (a transaction-scoped advisory
lock on the object id), and an event older than the newest one already applied to
its object changes nothing: Stripe delivers out of order and retries for days. The
event row, the object's tables and the ordering mark change in one transaction, so
a worker killed half-way leaves the event to be claimed again once its lease ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from tasks.billing.objects import Apply, handler_for
from workers.db import Connection
from workers.jobs import describe_error

LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 8


async def process_event(pool: asyncpg.Pool, event_id: str) -> str:
    """Process one event; return its new state (or 'skipped' when not ours to take now)."""
    async with pool.acquire() as conn:
        event = await conn.fetchrow(
            """
            UPDATE stripe_events SET state = 'processing', attempts = attempts + 1,
                   lease_until = now() + $2::interval
             WHERE id = $1 AND (state = 'received' OR (state = 'processing' AND lease_until < now()))
            RETURNING type, object_id, created, payload, attempts
            """,
            event_id,
            LEASE,
        )
        if event is None:
            return "skipped"  # done, ignored, failed, or another worker holds the lease
        try:
            async with conn.transaction():
                state = await _apply(conn, event_id, event)
                await conn.execute(
                    """
                    UPDATE stripe_events SET state = $2, processed_at = now(), lease_until = NULL,
                           last_error = NULL
                     WHERE id = $1
                    """,
                    event_id,
                    state,
                )
            return state
        except Exception as error:
            final = event["attempts"] >= MAX_ATTEMPTS
            await conn.execute(
                "UPDATE stripe_events SET state = $2, last_error = $3, lease_until = NULL WHERE id = $1",
                event_id,
                "failed" if final else "received",
                describe_error(error),
            )
            if final:
                return "failed"
            raise


async def _apply(conn: Connection, event_id: str, event: asyncpg.Record) -> str:
    apply = handler_for(event["type"])
    obj = (event["payload"] or {}).get("data", {}).get("object")
    if apply is None or event["object_id"] is None or not isinstance(obj, dict):
        return "ignored"
    await apply_in_order(conn, apply, obj, source=event_id, as_of=event["created"])
    return "done"


async def apply_in_order(
    conn: Connection, apply: Apply, obj: dict[str, Any], *, source: str, as_of: datetime
) -> bool:
    """Apply `obj` as it was at `as_of`, unless a newer state of it was applied already.

    Call inside a transaction: the advisory lock serialises every writer of this object
    (events, backfill) until commit. Returns whether it was applied.
    """
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", obj["id"])
    newest = await conn.fetchval(
        "SELECT last_event_created FROM stripe_objects WHERE object_id = $1", obj["id"]
    )
    if newest is not None and as_of < newest:
        return False  # older than what we applied: changes nothing
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


async def stale_events(conn: asyncpg.Pool | asyncpg.Connection, received_for: timedelta) -> list[str]:
    """Events the broker lost: received long ago, or whose processing lease ran out."""
    rows = await conn.fetch(
        """
        SELECT id FROM stripe_events
         WHERE (state = 'received' AND received_at < now() - $1::interval)
            OR (state = 'processing' AND lease_until < now())
         ORDER BY received_at LIMIT 5000
        """,
        received_for,
    )
    return [row["id"] for row in rows]
