"""The Stripe event inbox: store deliveries durably, once per event id.

The receiver calls `store_events` for a batch of concurrent deliveries (one INSERT,
one commit); Stripe gets its 200 only after that commit. A replayed event id inserts
nothing and is still a success. An event about an erased customer or one of its objects
(`tasks.billing.tombstones`) is stored without its payload, already ignored.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from tasks.billing.objects import reference_id
from workers.card_numbers import mask_card_numbers, may_hold_card_number
from workers.db import Connection


class MalformedEvent(Exception):
    """The body is not a Stripe event object (message names the problem, not the content)."""


@dataclass(frozen=True)
class IncomingEvent:
    id: str
    type: str
    object_id: str | None
    customer_id: str | None  # the customer the object belongs to, if it names one
    created: datetime
    livemode: bool
    payload: str  # JSON text, masked


# What the inbox's CHECK accepts (schema/0005_stripe_inbox.sql), in 255 characters at most;
# also the OpenAPI document's pattern (workers/web/openapi.py).
EVENT_ID = r"evt_[A-Za-z0-9_]{1,251}"
# 9999-12-31T23:59:59Z: past it a timestamp is no date (and Python cannot make one of it).
MAX_CREATED = 253_402_300_799


def _storable(value: object) -> bool:
    """Whether every string in a decoded JSON value can go into a Postgres text or jsonb."""
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_storable(key) and _storable(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    return True


def _no_constant(name: str) -> None:
    raise MalformedEvent(f"body holds {name}, which JSON does not have")


def _finite(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):  # 1e400: Python makes it inf, which jsonb cannot store
        raise MalformedEvent("body holds a number out of range")
    return value


# Built once: `json.loads` with hooks builds a decoder on every call, which cost as much
# as decoding a 2 KB event.
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


def parse_event(body: bytes) -> IncomingEvent:
    """Decode and check the envelope; the payload comes back with card-like numbers masked."""
    try:
        text = body.decode()
        # Python's json accepts NaN and Infinity, and turns 1e400 into inf: none of them
        # can be stored as jsonb.
        event = _DECODER.decode(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedEvent("body is not JSON") from None
    # Only an escape (\\u…) can smuggle in what Postgres refuses to store: a NUL, or half
    # of a surrogate pair. Raw UTF-8 has passed the strict decode above.
    if "\\u" in text and not _storable(event):
        raise MalformedEvent("body holds a NUL character or an unpaired surrogate")
    if not isinstance(event, dict) or event.get("object") != "event":
        raise MalformedEvent("body is not a Stripe event object")
    event_id, event_type, created = event.get("id"), event.get("type"), event.get("created")
    if not isinstance(event_id, str) or not re.fullmatch(EVENT_ID, event_id):
        raise MalformedEvent("missing or invalid event id")
    if not isinstance(event_type, str) or not event_type or len(event_type) > 255:
        raise MalformedEvent("missing or invalid event type")
    if not isinstance(created, int) or isinstance(created, bool) or not 0 <= created <= MAX_CREATED:
        raise MalformedEvent("missing or invalid created timestamp")
    livemode = event.get("livemode", False)
    if not isinstance(livemode, bool):
        raise MalformedEvent("invalid livemode")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise MalformedEvent("missing data.object")
    object_id = obj.get("id")
    return IncomingEvent(
        id=event_id,
        type=event_type,
        object_id=object_id if isinstance(object_id, str) else None,
        customer_id=reference_id(obj.get("customer")),
        created=datetime.fromtimestamp(created, UTC),
        livemode=livemode,
        # Most events hold no long digit run at all: store the body as received.
        payload=json.dumps(mask_card_numbers(event)) if may_hold_card_number(body) else text,
    )


async def store_events(conn: asyncpg.Pool | Connection, events: list[IncomingEvent]) -> list[bool]:
    """Insert the batch; per event, True when it is new and to be processed (False: a
    replay, which changed nothing, or an event about an erased customer, kept as ignored)."""
    rows = await conn.fetch(
        """
        INSERT INTO stripe_events (id, type, object_id, created, livemode, payload, state, processed_at)
        SELECT id, type, CASE WHEN buried THEN NULL ELSE object_id END, created, livemode,
               CASE WHEN buried THEN NULL ELSE payload::jsonb END,
               CASE WHEN buried THEN 'ignored' ELSE 'received' END, CASE WHEN buried THEN now() END
          FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::boolean[], $6::text[],
                      $7::text[])
               AS incoming(id, type, object_id, created, livemode, payload, customer_id)
               CROSS JOIN LATERAL (
                   SELECT EXISTS (SELECT 1 FROM stripe_tombstones  -- tasks/billing/tombstones.py
                                   WHERE digest IN (sha256(convert_to(object_id, 'UTF8')),
                                                    sha256(convert_to(customer_id, 'UTF8'))))
                          AS buried) AS erased
        ON CONFLICT (id) DO NOTHING
        RETURNING id, state
        """,
        [e.id for e in events],
        [e.type for e in events],
        [e.object_id for e in events],
        [e.created for e in events],
        [e.livemode for e in events],
        [e.payload for e in events],
        [e.customer_id for e in events],
    )
    new = {row["id"] for row in rows if row["state"] == "received"}
    # The same id twice in one batch: only its first occurrence is new.
    seen: set[str] = set()
    results = []
    for event in events:
        results.append(event.id in new and event.id not in seen)
        seen.add(event.id)
    return results
