from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from dramatiq.brokers.redis import RedisBroker

from tests.processes import eventually
from workers.settings import load_settings
from workers.tokens import create_token
from workers.web.app import MAX_BODY, create_app


@pytest.fixture
async def client(database_url: str, redis_client: redis.Redis) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(load_settings()))) as client:
        yield client


@pytest.fixture
async def token(pool: asyncpg.Pool, request: pytest.FixtureRequest) -> str:
    return await create_token(pool, f"t-{abs(hash(request.node.nodeid)) % 10**9}", ["system"])


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_ping_is_accepted_stored_and_enqueued(
    client: TestClient[Any, Any], token: str, pool: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    response = await client.post("/jobs/system.ping", json={}, headers=auth(token))
    assert response.status == 202
    body = await response.json()
    assert body["status"] == "queued"
    row = await pool.fetchrow("SELECT name, status, arguments FROM jobs WHERE id = $1::uuid", body["job_id"])
    assert dict(row) == {"name": "system.ping", "status": "queued", "arguments": {}}

    # The message goes out after the response, on the server's event loop.
    await eventually(lambda: redis_client.llen("bindery:default"), 5, "the message on the default queue")
    status = await client.get(f"/jobs/{body['job_id']}", headers=auth(token))
    assert (await status.json())["status"] == "queued"


async def test_missing_or_bad_token_is_401(client: TestClient[Any, Any]) -> None:
    for headers in ({}, {"Authorization": "Bearer bnd_1_" + "x" * 43}, {"Authorization": "Basic abc"}):
        response = await client.post("/jobs/system.ping", json={}, headers=headers)
        assert response.status == 401
        assert (await response.json())["error"] == "unauthorized"


async def test_token_without_the_scope_is_403(client: TestClient[Any, Any], pool: asyncpg.Pool) -> None:
    other = await create_token(pool, "billing-only", ["billing"])
    response = await client.post("/jobs/system.ping", json={}, headers=auth(other))
    assert response.status == 403


async def test_unknown_job_is_404(client: TestClient[Any, Any], token: str) -> None:
    response = await client.post("/jobs/no.such", json={}, headers=auth(token))
    assert response.status == 404
    assert (await response.json())["error"] == "unknown_job"


@pytest.mark.parametrize(
    ("data", "content_type", "status", "error"),
    [
        (b'{"oops": ', "application/json", 400, "malformed_json"),
        (b"<xml/>", "text/xml", 415, "unsupported_media_type"),
        (b"[1, 2]", "application/json", 422, "invalid_arguments"),
        (b"null", "application/json", 422, "invalid_arguments"),
        (b'{"unexpected": 1}', "application/json", 422, "invalid_arguments"),
        (b"x" * (MAX_BODY + 1), "application/json", 413, "request_entity_too_large"),
        (b"[" * 50_000 + b"]" * 50_000, "application/json", 400, "too_deeply_nested"),  # json.loads recurses
        (b'{"a": ' * 33 + b"1" + b"}" * 33, "application/json", 400, "too_deeply_nested"),
    ],
)
async def test_bad_requests_get_json_errors_and_store_nothing(
    client: TestClient[Any, Any],
    token: str,
    pool: asyncpg.Pool,
    data: bytes,
    content_type: str,
    status: int,
    error: str,
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM jobs")
    response = await client.post(
        "/jobs/system.ping", data=data, headers={**auth(token), "Content-Type": content_type}
    )
    assert response.status == status
    assert (await response.json())["error"] == error
    assert await pool.fetchval("SELECT count(*) FROM jobs") == before


async def test_a_job_about_an_unknown_account_is_404_and_stored_nowhere(
    client: TestClient[Any, Any], pool: asyncpg.Pool
) -> None:
    billing = await create_token(pool, f"billing-{secrets.token_hex(3)}", ["billing"])
    before = await pool.fetchval("SELECT count(*) FROM jobs")
    response = await client.post(
        "/jobs/billing.push_account", json={"account_id": 2**63 - 2}, headers=auth(billing)
    )
    assert response.status == 404 and (await response.json())["error"] == "not_found"
    assert await pool.fetchval("SELECT count(*) FROM jobs") == before


@pytest.mark.parametrize("written", ["4242424242424242", "4.242424242424242e15", "4242424242424242.0"])
async def test_an_argument_that_holds_a_card_number_is_refused_and_stored_nowhere(
    client: TestClient[Any, Any], pool: asyncpg.Pool, written: str
) -> None:
    """Job arguments are stored in the job's row: a card number there, even as the id of
    an account that exists, would break the promise."""
    await pool.execute(
        """INSERT INTO accounts (id, email, password_hash, first_name, status)
           VALUES (4242424242424242, 'card-id@exemple.fr', 'x', 'Id', 'active') ON CONFLICT (id) DO NOTHING"""
    )
    billing = await create_token(pool, f"billing-{secrets.token_hex(3)}", ["billing"])
    before = await pool.fetchval("SELECT count(*) FROM jobs")
    try:
        response = await client.post(
            "/jobs/billing.push_account",
            data='{"account_id": ' + written + "}",
            headers={**auth(billing), "Content-Type": "application/json"},
        )
    finally:
        await pool.execute("DELETE FROM accounts WHERE id = 4242424242424242")
    assert response.status == 422, await response.text()
    answer = await response.json()
    assert answer["error"] == "invalid_arguments" and "4242424242" not in json.dumps(answer)
    assert await pool.fetchval("SELECT count(*) FROM jobs") == before


async def test_idempotency_key_replays_the_same_job(client: TestClient[Any, Any], token: str) -> None:
    headers = {**auth(token), "Idempotency-Key": "ping-1"}
    first = await (await client.post("/jobs/system.ping", json={}, headers=headers)).json()
    second = await (await client.post("/jobs/system.ping", json={}, headers=headers)).json()
    assert first["job_id"] == second["job_id"]


async def test_idempotency_key_with_other_arguments_is_409(
    client: TestClient[Any, Any], token: str, pool: asyncpg.Pool
) -> None:
    # Same key, different job: the registry holds one job, so replay it as another name's
    # request by inserting the earlier job directly under this token.
    token_id = int(token.split("_")[1])
    await pool.execute(
        """INSERT INTO jobs (id, name, arguments, token_id, idempotency_key)
           VALUES (gen_random_uuid(), 'system.ping', '{"other": true}', $1, 'key-409')""",
        token_id,
    )
    response = await client.post(
        "/jobs/system.ping", json={}, headers={**auth(token), "Idempotency-Key": "key-409"}
    )
    assert response.status == 409
    assert (await response.json())["error"] == "idempotency_conflict"


async def test_job_status_of_unknown_id_is_404(client: TestClient[Any, Any], token: str) -> None:
    for job_id in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        response = await client.get(f"/jobs/{job_id}", headers=auth(token))
        assert response.status == 404


async def test_probes_metrics_and_openapi(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["database"] == "ok"
    metrics = await (await client.get("/metrics")).text()
    assert "bindery_http_requests_total" in metrics
    document = await (await client.get("/openapi.json")).json()
    assert "/jobs/system.ping" in document["paths"]


async def test_readyz_names_the_broker_when_it_is_unreachable(database_url: str) -> None:
    dead = RedisBroker(url="redis://127.0.0.1:1/0")
    async with TestClient(TestServer(create_app(load_settings(), broker=dead))) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        assert (await response.json())["detail"] == {"broker": "unreachable"}


async def test_unknown_route_is_a_json_404(client: TestClient[Any, Any]) -> None:
    response = await client.get("/nowhere")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"
