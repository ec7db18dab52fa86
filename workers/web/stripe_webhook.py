"""`POST /webhooks/stripe`: verify, then store in the inbox; 200 only once committed.

Concurrent deliveries share one INSERT and one commit (group commit through the
Batcher). A replay of a known event id is 200 and changes nothing. 400: bad or stale
signature, or not an event; 413: over 1 MiB; 503: the database is away (Stripe retries).
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from tasks.billing.actors import event_messages
from tasks.billing.inbox import IncomingEvent, MalformedEvent, parse_event, store_events
from tasks.billing.signature import SignatureError, verify_signature
from workers.db import Connection
from workers.web.errors import json_error
from workers.web.sending import send_after_commit
from workers.web.state import STATE, WebState


async def receive_stripe_event(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await request.read()  # raises 413 past the app's client_max_size
    try:
        verify_signature(
            body, request.headers.get("Stripe-Signature"), state.settings.webhook_secrets, time.time()
        )
        event = parse_event(body)
    except SignatureError as error:
        return json_error(400, "bad_signature", str(error))
    except MalformedEvent as error:
        return json_error(400, "malformed_event", str(error))
    new = await state.stripe_inbox.submit(event)
    return web.Response(body=_STORED if new else _REPLAYED, content_type="application/json")


# The two answers a stored delivery gets, encoded once.
_STORED = json.dumps({"received": True, "duplicate": False}).encode()
_REPLAYED = json.dumps({"received": True, "duplicate": True}).encode()


async def flush_events(state: WebState, conn: Connection, batch: list[IncomingEvent]) -> list[bool]:
    """One INSERT for the batch; after commit, one processing message per new event."""
    new = await store_events(conn, batch)
    fresh = [event.id for event, is_new in zip(batch, new, strict=True) if is_new]
    if fresh:
        send_after_commit(state, event_messages(fresh))
    return new
