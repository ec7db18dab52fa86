"""Hostile text in every input that takes text reaches the database, the inbox and the
erasure's search as inert text: stored and found back exactly, changing nothing else.

Job arguments are ids only (a string where an id goes is a 422 and stores nothing); the
text inputs are the idempotency key, Stripe's event payloads (names, emails and
addresses a customer typed), and the account's own fields, which the erasure searches
for and breach mail renders (tests/breach/test_breach_message.py renders them).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis
import stripe
from aiohttp.test_utils import TestClient, TestServer

from tasks.erasure.verify import find_leftovers
from tests.billing_events import new_id
from tests.erasure_scenario import erasure_of
from workers.resources import Resources
from workers.settings import load_settings
from workers.tokens import create_token
from workers.web.app import create_app

HOSTILE = [
    "Robert'); DROP TABLE accounts;--",
    "' OR '1'='1",
    '"; DELETE FROM jobs WHERE "1"="1',
    "100% _off_ \\' \\\\",
    "$1 $$ $tag$ ::text",
    "x\r\nBcc: attacker@evil.example",
    "<script>alert(1)</script>",
]
SECRET = "whsec_injection"


@pytest.fixture
async def client(
    database_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TestClient[Any, Any]]:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    async with TestClient(TestServer(create_app(load_settings()))) as client:
        yield client


async def tables(pool: asyncpg.Pool) -> set[str]:
    rows = await pool.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    return {row["table_name"] for row in rows}


async def test_a_hostile_idempotency_key_is_just_a_key(
    client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    token = await create_token(pool, f"inj-{secrets.token_hex(3)}", ["system"])
    before = await tables(pool)
    for key in ("';DROP_TABLE_jobs;--", "'OR'1'='1", "$1::text"):  # a key is printable ASCII, no space
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
        first = await (await client.post("/jobs/system.ping", json={}, headers=headers)).json()
        again = await (await client.post("/jobs/system.ping", json={}, headers=headers)).json()
        assert first["job_id"] == again["job_id"]
        assert (
            await pool.fetchval("SELECT idempotency_key FROM jobs WHERE id = $1::uuid", first["job_id"])
            == key
        )
    assert await tables(pool) == before


async def test_text_where_a_job_takes_an_id_is_refused_and_stores_nothing(
    client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    token = await create_token(pool, f"inj-{secrets.token_hex(3)}", ["erasure"])
    before = await pool.fetchval("SELECT count(*) FROM jobs")
    for value in HOSTILE:
        response = await client.post(
            "/jobs/erasure.request", json={"account_id": value}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 422
        assert value not in await response.text()  # field errors never echo the value
    assert await pool.fetchval("SELECT count(*) FROM jobs") == before


async def test_hostile_text_in_a_stripe_event_is_stored_exactly(
    client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    before = await tables(pool)
    event_id = new_id("evt", 20)
    customer: dict[str, Any] = {"id": f"cus_{secrets.token_hex(6)}", "object": "customer", "name": HOSTILE[0]}
    customer["address"] = {f"line{n}": value for n, value in enumerate(HOSTILE)}
    event = {
        "id": event_id,
        "object": "event",
        "type": "customer.updated",
        "created": int(time.time()),
        "data": {"object": customer},
    }
    body = json.dumps(event).encode()
    signature = stripe.WebhookSignature.generate_signature_header(body.decode(), SECRET)
    response = await client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )
    assert response.status == 200
    stored = await pool.fetchval("SELECT payload FROM stripe_events WHERE id = $1", event_id)
    assert stored["data"]["object"] == customer
    assert await tables(pool) == before


async def test_the_erasure_search_treats_hostile_names_as_text(worker_resources: Resources) -> None:
    """LIKE's own wildcards (% _ \\) in a name match only themselves: the search finds the
    hostile account's data where it is, and nothing of a neighbour whose text the same
    name would match as a pattern."""
    pool = worker_resources.pool
    assert worker_resources.stripe is not None
    tag = secrets.token_hex(3)
    hostile = await pool.fetchval(
        """INSERT INTO accounts (email, password_hash, first_name, last_name, business_name)
           VALUES ($1, 'x', $2, $3, $4) RETURNING id""",
        f"o'hara_{tag}%@exemple.fr",
        "Robert');",
        f"DROP_{tag}%",
        f"100%_off_{tag}",
    )
    # A neighbour's note that the names would match were % and _ wildcards.
    await pool.execute(
        "INSERT INTO audit_log (actor, action, details) VALUES ('test', 'note', $1)",
        {"note": f"100X off {tag} and DROPX{tag}ZZ"},
    )
    erasure = await erasure_of(worker_resources, hostile)
    assert await find_leftovers(erasure) == {}
    await pool.execute(
        "INSERT INTO audit_log (actor, action, details) VALUES ('test', 'note', $1)",
        {"note": f"about 100%_off_{tag}"},
    )
    assert await find_leftovers(erasure) == {"audit_log.details": 1}
