"""Apply inbox events: claimed with a lease, serialised per Stripe object, in order.

Ordering is `tasks.billing.ordering`'s: two events of the same object never apply
concurrently, and an event older than the newest one already applied to its object
changes nothing (Stripe delivers out of order and retries for days). The event row,
the object's tables and the ordering mark change in one transaction (shared by the
events of one message when it can be), so a worker killed half-way leaves the events to
be claimed again once their lease ends.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from tasks.billing.objects import handler_for
from tasks.billing.ordering import apply_in_order
from tasks.billing.refetch import Refetcher
from tasks.billing.setup_intents import apply_setup_intent
from workers.db import Connection, redoable_transaction
from workers.errors import JobError
from workers.jobs import describe_error
from workers.leases import abandoned, claimable, lease_for
from workers.logs import get_logger

log = get_logger(__name__)

LEASE = lease_for("billing")  # a claim lives for one message
MAX_ATTEMPTS = 8


# `buried`: the event is about an erased customer or object (tasks/billing/tombstones.py),
# buried after the event was stored.
CLAIM = f"""
    UPDATE stripe_events SET state = 'processing', attempts = attempts + 1,
           lease_until = now() + $2::interval
      -- A claim lost in a server crash is only a lease lost: commit it without a flush.
      FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed
     WHERE id = ANY($1::text[]) AND {claimable("received", "processing")}
    RETURNING id, type, object_id, created, payload, attempts,
              EXISTS (SELECT 1 FROM stripe_tombstones
                       WHERE digest IN (sha256(convert_to(object_id, 'UTF8')),
                                        sha256(convert_to(payload #>> '{{data,object,customer}}', 'UTF8'))))
                  AS buried
"""  # nosec B608: workers.leases' fixed predicates, no input


async def process_event(pool: asyncpg.Pool, event_id: str, refetch: Refetcher | None = None) -> str:
    """Process one event; return its new state (or 'skipped' when not ours to take now).

    Without `refetch` (no Stripe client) ties apply in arrival order and setup intents
    cannot be followed: they fail, visibly, rather than pass as done.
    """
    return (await process_events(pool, [event_id], refetch)).get(event_id, "skipped")


async def process_events(
    pool: asyncpg.Pool, event_ids: list[str], refetch: Refetcher | None = None
) -> dict[str, str]:
    """Process the events of one message; return the new state of each one claimed.

    Several are applied in one transaction, in the order of their objects (so that two
    such transactions lock shared objects in the same order) and of their times: one
    commit instead of one each, and about half the statements. If that transaction fails
    (one event cannot be applied, a deadlock, a Stripe call), it is rolled back whole and
    each event is applied alone, as a single one is, so one bad event holds back no other.
    An event that is to be tried again raises once all have had their turn.
    """
    async with pool.acquire() as conn:
        claimed = sorted(
            await conn.fetch(CLAIM, event_ids, LEASE),
            key=lambda event: (event["object_id"] or "", event["created"], event["id"]),
        )
        if len(claimed) > 1 and _together(claimed, refetch):
            try:
                async with redoable_transaction(conn):
                    return {event["id"]: await _apply_and_close(conn, event, refetch) for event in claimed}
            except Exception as error:
                log.info("stripe events applied one by one", count=len(claimed), error=type(error).__name__)
        states: dict[str, str] = {}
        errors: list[Exception] = []
        for event in claimed:
            try:
                states[event["id"]] = await _process_claimed(conn, event, refetch)
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]
        return states


def _together(events: list[asyncpg.Record], refetch: Refetcher | None) -> bool:
    """Whether the events may share a transaction: not when some of them call Stripe for
    sure (setup intents, or every event under STRIPE_REFETCH=always), which would hold
    the other events' objects locked through network calls."""
    if refetch is not None and refetch.mode == "always":
        return False
    return not any(event["type"] == "setup_intent.succeeded" for event in events)


async def _process_claimed(conn: Connection, event: asyncpg.Record, refetch: Refetcher | None) -> str:
    """Apply one claimed event in its own transaction; on failure, hand it back (or fail it
    for good after MAX_ATTEMPTS) with a safe error, and raise unless it failed for good."""
    try:
        # Redoable: a commit lost with the server leaves the event to the reconciler.
        async with redoable_transaction(conn):
            return await _apply_and_close(conn, event, refetch)
    except Exception as error:
        final = event["attempts"] >= MAX_ATTEMPTS
        await conn.execute(
            "UPDATE stripe_events SET state = $2, last_error = $3, lease_until = NULL WHERE id = $1",
            event["id"],
            "failed" if final else "received",
            describe_error(error),
        )
        if final:
            log.warning("stripe event failed for good", event_id=event["id"])
            return "failed"
        raise


async def _apply_and_close(conn: Connection, event: asyncpg.Record, refetch: Refetcher | None) -> str:
    state, closed = await _apply(conn, event["id"], event, refetch)
    if not closed:
        await conn.execute(
            """
            UPDATE stripe_events SET state = $2, processed_at = now(), lease_until = NULL, last_error = NULL
             WHERE id = $1
            """,
            event["id"],
            state,
        )
    return state


async def _apply(
    conn: Connection, event_id: str, event: asyncpg.Record, refetch: Refetcher | None
) -> tuple[str, bool]:
    """The event's outcome, and whether its row says so already (closed with the
    object's ordering mark, which saves a statement per event)."""
    obj = (event["payload"] or {}).get("data", {}).get("object")
    if event["buried"]:  # the customer was erased: what the event says is kept nowhere
        await conn.execute(
            "UPDATE stripe_events SET payload = NULL, object_id = NULL WHERE id = $1", event_id
        )
        return "ignored", False
    if event["object_id"] is None or not isinstance(obj, dict):
        return "ignored", False
    if event["type"] == "setup_intent.succeeded":
        if refetch is None:
            raise JobError("a setup intent's payment method and mandate need a Stripe client")
        await apply_setup_intent(conn, refetch, obj, source=event_id, as_of=event["created"])
        return "done", False
    apply = handler_for(event["type"])
    if apply is None:
        return "ignored", False
    await apply_in_order(
        conn,
        apply,
        obj,
        source=event_id,
        as_of=event["created"],
        refetch=refetch,
        event_type=event["type"],
        closes_event=True,
    )
    if event["type"] == "customer.deleted":
        # The deleted customer's name, email and address are in the payload, and nothing
        # needs them any more (an erasure deletes the customer, and this event follows).
        await conn.execute(
            "UPDATE stripe_events SET payload = NULL, object_id = NULL WHERE id = $1", event_id
        )
    return "done", True


async def stale_events(conn: asyncpg.Pool | asyncpg.Connection, received_for: timedelta) -> list[str]:
    """Events the broker lost: received long ago, or whose processing lease ran out."""
    rows = await conn.fetch(
        f"""
        SELECT id FROM stripe_events
         WHERE (state = 'received' AND received_at < now() - $1::interval)
            OR {abandoned("processing")}
         ORDER BY received_at LIMIT 5000
        """,  # nosec B608: workers.leases' fixed predicates, no input
        received_for,
    )
    return [row["id"] for row in rows]
