"""Stripe events as the tests build and deliver them."""

from __future__ import annotations

import itertools
import json
import secrets
import string
from typing import Any

import asyncpg

from tasks.billing.inbox import parse_event, store_events
from tasks.billing.processing import process_event
from tasks.billing.refetch import Refetcher

_clock = itertools.count(1_790_000_000)
_BASE62 = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 16) -> str:
    """An id shaped like Stripe's: base62 after the prefix. Not hex: 16 hex characters hold
    13 digits in a row often enough that, one time in ten, Luhn-valid, the inbox masks
    them as a card number (and a subscription whose id was masked breaks its CHECK)."""
    return f"{prefix}_" + "".join(secrets.choice(_BASE62) for _ in range(length))


def event(event_type: str, obj: dict[str, Any], created: int | None = None) -> dict[str, Any]:
    return {
        "id": new_id("evt", 20),
        "object": "event",
        "type": event_type,
        "created": created if created is not None else next(_clock),
        "livemode": False,
        "data": {"object": obj},
    }


def subscription(sub_id: str, customer: str, status: str, price: str = "price_pro") -> dict[str, Any]:
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": False,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_1",
                    "price": {"id": price, "object": "price"},
                    "current_period_start": 1_790_000_000,
                    "current_period_end": 1_792_678_400,
                }
            ],
        },
    }


async def deliver(pool: asyncpg.Pool, *events: dict[str, Any], refetch: Refetcher | None = None) -> list[str]:
    """Store then process each event, as the receiver and a worker would."""
    states = []
    for item in events:
        await stored(pool, item)
        states.append(await process_event(pool, item["id"], refetch))
    return states


async def new_account(pool: asyncpg.Pool) -> int:
    account_id: int = await pool.fetchval(
        "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id",
        f"{secrets.token_hex(6)}@example.org",
    )
    return account_id


def sepa_mandate(mandate_id: str, method_id: str, reference: str) -> dict[str, Any]:
    """A multi-use SEPA Debit mandate as Stripe sends it, with the customer's acceptance
    (IP address, user agent) that bindery must not keep."""
    return {
        "id": mandate_id,
        "object": "mandate",
        "payment_method": method_id,
        "status": "active",
        "type": "multi_use",
        "customer_acceptance": {
            "accepted_at": 1_790_000_100,
            "type": "online",
            "online": {"ip_address": "203.0.113.9", "user_agent": "Mozilla/5.0"},
        },
        "payment_method_details": {
            "type": "sepa_debit",
            "sepa_debit": {"reference": reference, "url": "https://x"},
        },
    }


async def stored(pool: asyncpg.Pool, *events: dict[str, Any]) -> list[str]:
    """Store the events in the inbox, as the receiver does; their ids."""
    await store_events(pool, [parse_event(json.dumps(item).encode()) for item in events])
    return [str(item["id"]) for item in events]


async def all_done(pool: asyncpg.Pool, event_ids: list[str]) -> bool:
    """Whether every one of the inbox events is `done`."""
    states = await pool.fetch("SELECT state FROM stripe_events WHERE id = ANY($1)", event_ids)
    return [row["state"] for row in states] == ["done"] * len(event_ids)
