"""Billing's HTTP surface, `POST /webhooks/stripe`: verify, then store in the inbox; 200
only once committed.

Concurrent deliveries share one INSERT and one commit (group commit through the
Batcher). A replay of a known event id is 200 and changes nothing. 400: bad or stale
signature, or not an event; 413: over 1 MiB; 503: the database is away (Stripe retries).
The web process mounts it through `register`, and its OpenAPI document takes
`openapi_paths` and `openapi_schemas` (see workers/domains.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from tasks.billing.actors import event_messages
from tasks.billing.inbox import (
    EVENT_ID,
    MAX_CREATED,
    IncomingEvent,
    MalformedEvent,
    parse_event,
    store_events,
)
from tasks.billing.signature import SignatureError, verify_signature
from workers.batching import PooledBatcher
from workers.db import Connection
from workers.web.after_commit import send_after_commit
from workers.web.errors import json_error
from workers.web.openapi import error_responses, json_response
from workers.web.state import STATE, WebState

INBOX = web.AppKey("stripe_inbox", PooledBatcher[IncomingEvent, bool])


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
    new = await request.app[INBOX].submit(event)
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


async def _open_inbox(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]  # opened before: the web process's own context comes first
    app[INBOX] = PooledBatcher(state.pool, lambda conn, batch: flush_events(state, conn, batch))
    yield


def register(app: web.Application) -> None:
    app.cleanup_ctx.append(_open_inbox)
    app.router.add_post("/webhooks/stripe", receive_stripe_event)


def openapi_paths() -> dict[str, Any]:
    return {
        "/webhooks/stripe": {
            "post": {
                "summary": "A Stripe event, signed (Stripe-Signature); stored before the 200",
                "parameters": [
                    {
                        "name": "Stripe-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StripeEvent"}}},
                },
                "responses": {
                    "200": json_response(
                        {
                            "type": "object",
                            "required": ["received", "duplicate"],
                            "properties": {"received": {"type": "boolean"}, "duplicate": {"type": "boolean"}},
                        },
                        "stored (or already known)",
                    ),
                    **error_responses(400, 413, 503),
                },
            }
        }
    }


def openapi_schemas() -> dict[str, Any]:
    # What the receiver checks of an event before storing it (tasks/billing/inbox.py).
    return {
        "StripeEvent": {
            "type": "object",
            "required": ["id", "object", "type", "created", "data"],
            "properties": {
                "id": {"type": "string", "pattern": "^" + EVENT_ID + "$"},
                "object": {"const": "event"},
                "type": {"type": "string", "minLength": 1, "maxLength": 255},
                "created": {"type": "integer", "minimum": 0, "maximum": MAX_CREATED},
                "livemode": {"type": "boolean"},
                "data": {
                    "type": "object",
                    "required": ["object"],
                    "properties": {"object": {"type": "object"}},
                },
            },
        }
    }
