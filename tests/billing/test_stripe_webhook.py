"""`POST /webhooks/stripe` against a real database: signed events land in the inbox once;
anything else is refused and stores nothing."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import stripe
from aiohttp.test_utils import TestClient, TestServer

from tests.billing_events import new_id
from tests.http import answers
from tests.privacy.card_detector import card_numbers
from tests.processes import bindery, bindery_env, wait_until
from workers.devstack.servers import free_port
from workers.settings import load_settings
from workers.web.app import create_app

SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"


def make_event(**fields: Any) -> dict[str, Any]:
    event_id = new_id("evt", 24)
    return {
        "id": event_id,
        "object": "event",
        "type": "customer.updated",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": {"id": "cus_" + secrets.token_hex(6), "object": "customer", **fields}},
    }


def signed(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=timestamp)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


@pytest.fixture
async def client(database_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient[Any, Any]]:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", f"{SECRET},{OLD_SECRET}")
    async with TestClient(TestServer(create_app(load_settings()))) as client:
        yield client


async def stored(pool: asyncpg.Pool, event_id: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM stripe_events WHERE id = $1", event_id))


async def test_a_signed_event_is_stored_once_and_a_replay_changes_nothing(
    client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    event = make_event()
    body = json.dumps(event).encode()
    first = await client.post("/webhooks/stripe", data=body, headers=signed(body))
    assert first.status == 200 and (await first.json()) == {"received": True, "duplicate": False}
    row = await pool.fetchrow(
        "SELECT type, object_id, state, payload FROM stripe_events WHERE id = $1", event["id"]
    )
    assert (row["type"], row["object_id"], row["state"]) == (
        "customer.updated",
        event["data"]["object"]["id"],
        "received",
    )
    replay = await client.post("/webhooks/stripe", data=body, headers=signed(body))
    assert replay.status == 200 and (await replay.json())["duplicate"] is True
    assert await stored(pool, event["id"]) == 1


async def test_either_rotated_secret_is_accepted(client: TestClient[Any, Any], pool: asyncpg.Pool) -> None:
    event = make_event()
    body = json.dumps(event).encode()
    response = await client.post("/webhooks/stripe", data=body, headers=signed(body, OLD_SECRET))
    assert response.status == 200
    assert await stored(pool, event["id"]) == 1


@pytest.mark.parametrize(
    "tamper",
    ["wrong-secret", "stale", "future", "no-header", "body-changed", "garbage-header"],
)
async def test_unauthentic_or_stale_deliveries_are_400_and_store_nothing(
    client: TestClient[Any, Any], pool: asyncpg.Pool, tamper: str
) -> None:
    event = make_event()
    body = json.dumps(event).encode()
    now = int(time.time())
    headers = {
        "wrong-secret": signed(body, "whsec_someone_else"),
        "stale": signed(body, timestamp=now - 301),
        "future": signed(body, timestamp=now + 301),
        "no-header": {"Content-Type": "application/json"},
        "body-changed": signed(body.replace(b"customer.updated", b"customer.deleted")),
        "garbage-header": {"Stripe-Signature": "t=abc,v1=", "Content-Type": "application/json"},
    }[tamper]
    response = await client.post("/webhooks/stripe", data=body, headers=headers)
    assert response.status == 400
    assert (await response.json())["error"] == "bad_signature"
    assert await stored(pool, event["id"]) == 0


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "evt_1", "object": "event", "type": "x", "created": 1, "data": {"object"',
        b"[]",
        b'{"object": "event"}',
        # Found by schemathesis: each reached the database and came back a 500.
        b'{"id": "evt_", "object": "event", "type": "x", "created": 1, "data": {"object": {}}}',
        b'{"id":"evt_1","object":"event","type":"x\\u0000","created":1,"data":{"object":{}}}',
        b'{"id":"evt_1","object":"event","type":"x","created":1,"data":{"object":{"n":"\\ud800"}}}',
        b'{"id":"evt_1","object":"event","type":"x","created":10000000000000,"data":{"object":{}}}',
        b'{"id":"evt_1","object":"event","type":"x","created":1,"livemode":{},"data":{"object":{}}}',
        # Python's json reads these; jsonb cannot store them.
        b'{"id":"evt_1","object":"event","type":"x","created":1,"data":{"object":{"n":NaN}}}',
        b'{"id":"evt_1","object":"event","type":"x","created":1,"data":{"object":{"n":-Infinity}}}',
        b'{"id":"evt_1","object":"event","type":"x","created":1,"data":{"object":{"n":1e400}}}',
    ],
    ids=[
        "truncated",
        "not-an-object",
        "no-id",
        "empty-id",
        "nul",
        "surrogate",
        "year-300000",
        "livemode",
        "nan",
        "infinity",
        "overflow",
    ],
)
async def test_signed_but_malformed_bodies_are_400(
    client: TestClient[Any, Any], pool: asyncpg.Pool, body: bytes
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM stripe_events")
    response = await client.post("/webhooks/stripe", data=body, headers=signed(body))
    assert response.status == 400
    assert (await response.json())["error"] == "malformed_event"
    assert await pool.fetchval("SELECT count(*) FROM stripe_events") == before


async def test_a_body_over_one_mebibyte_is_413(client: TestClient[Any, Any], pool: asyncpg.Pool) -> None:
    event = make_event(description="x" * (2 * 1024 * 1024))
    body = json.dumps(event).encode()
    response = await client.post("/webhooks/stripe", data=body, headers=signed(body))
    assert response.status == 413
    assert await stored(pool, event["id"]) == 0


async def test_card_like_numbers_never_reach_the_inbox(
    client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    event = make_event(
        description="card 4242 4242 4242 4242 exp", metadata={"n": 4000056655665556, "ref": "12345"}
    )
    body = json.dumps(event).encode()
    assert (await client.post("/webhooks/stripe", data=body, headers=signed(body))).status == 200
    payload = json.dumps(await pool.fetchval("SELECT payload FROM stripe_events WHERE id = $1", event["id"]))
    assert card_numbers(payload) == []
    assert '"ref": "12345"' in payload  # short numbers are left alone


async def test_database_down_is_503_so_stripe_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    async with TestClient(TestServer(create_app(load_settings()))) as client:
        body = json.dumps(make_event()).encode()
        response = await client.post("/webhooks/stripe", data=body, headers=signed(body))
        assert response.status == 503
        assert response.headers["Retry-After"]


def test_an_event_acknowledged_before_a_kill_9_is_in_the_inbox(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = bindery_env(STRIPE_WEBHOOK_SECRET=SECRET)
    event = make_event()
    body = json.dumps(event).encode()
    with bindery("web", "--port", str(port), log=tmp_path / "web.log", env=env) as web:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 20, "bindery web")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/webhooks/stripe", data=body, headers=signed(body), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        os.killpg(web.pid, signal.SIGKILL)
        web.wait(10)

    async def count() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM stripe_events WHERE id = $1", event["id"]))
        finally:
            await conn.close()

    assert asyncio.run(count()) == 1
