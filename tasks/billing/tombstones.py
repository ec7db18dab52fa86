"""Tombstones of erased Stripe customers and of the objects they owned.

An erasure buries its customer's id and its objects' ids (`bury`) before it deletes the
customer at Stripe. From then on Stripe keeps talking about them: `customer.subscription
.deleted` for each subscription, `customer.deleted`, `invoice.*`, retried for three days,
late and out of order; backfill lists the canceled objects for good. Each of those is
about a buried id, and none may bring the customer's data back:

- the inbox stores such an event without its payload or object, already `ignored`
  (`tasks.billing.inbox.store_events`), so nothing of it is processed;
- an event stored before the burial is checked again when it is claimed, and applied
  as `ignored` with its payload dropped (`tasks.billing.processing`);
- every other writer (backfill, setup intents) goes through `apply_in_order`, which
  refuses a buried object.

A tombstone is the sha256 of the id, never the id (verification of an erasure searches
every table for the raw ids): `sha256(convert_to(id, 'UTF8'))`, written out in each query
that checks one (the inbox's insert, processing's claim, `is_buried`).
"""

from __future__ import annotations

from typing import Any

from tasks.billing.objects import reference_id
from workers.db import Connection


async def bury(conn: Connection, stripe_ids: list[str]) -> None:
    """Bury the ids (a customer's, its objects'); burying one twice changes nothing."""
    await conn.execute(
        """INSERT INTO stripe_tombstones (digest)
           SELECT DISTINCT sha256(convert_to(id, 'UTF8')) FROM unnest($1::text[]) AS ids(id)
           ON CONFLICT DO NOTHING""",
        stripe_ids,
    )


async def is_buried(conn: Connection, obj: dict[str, Any]) -> bool:
    """Whether the object, or the customer it belongs to, was erased."""
    found = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM stripe_tombstones
                           WHERE digest IN (sha256(convert_to($1::text, 'UTF8')),
                                            sha256(convert_to($2::text, 'UTF8'))))""",
        obj.get("id"),
        reference_id(obj.get("customer")),
    )
    return bool(found)
