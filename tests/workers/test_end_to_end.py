"""The whole path through real processes: `bindery web` → broker → `bindery worker` → Postgres."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis
import stripe

from tests.conftest import RABBITMQ_URL, REDIS_URL
from tests.http import answers, call, finished_job, web_and_worker
from tests.processes import bindery, bindery_env, run_bindery, wait_until
from workers.db import connect
from workers.devstack.servers import free_port


@pytest.mark.parametrize("broker_url", [REDIS_URL, RABBITMQ_URL], ids=["redis", "rabbitmq"])
def test_ping_runs_end_to_end(
    broker_url: str, database_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = bindery_env(BROKER_URL=broker_url)
    created = run_bindery(
        "token", "create", f"e2e-{tmp_path.name[-20:]}".lower(), "--scope", "system", env=env
    )
    token = created.stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    with web_and_worker(tmp_path, env) as base:
        assert call("GET", f"{base}/readyz")[0] == 200
        status, _, body = call("POST", f"{base}/jobs/system.ping", body={}, headers=headers)
        assert status == 202, body

        job = finished_job(base, body["job_id"], headers, 30, "the ping job to finish")
        assert job["status"] == "done", (tmp_path / "worker.log").read_text()
        assert job["result"]["pong"] is True
        # One pool per worker process, no larger than its thread count.
        worker_connections = asyncio.run(_connections(database_url, "bindery-worker"))
        assert 1 <= worker_connections <= 2


async def _connections(database_url: str, application_name: str) -> int:
    conn = await connect(database_url)
    try:
        count: int = await conn.fetchval(
            """SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = $1""",
            application_name,
        )
        return count
    finally:
        await conn.close()


def test_a_signed_stripe_event_reaches_the_billing_tables(
    database_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    secret = "whsec_end_to_end"
    env = bindery_env(STRIPE_WEBHOOK_SECRET=secret)
    sub_id = f"sub_e2e{tmp_path.name[-8:].replace('_', '').replace('-', '')}"
    body = json.dumps(
        {
            "id": f"evt_{sub_id}",
            "object": "event",
            "type": "customer.subscription.created",
            "created": 1_790_000_000,
            "data": {
                "object": {"id": sub_id, "object": "subscription", "customer": "cus_e2e", "status": "active"}
            },
        }
    )
    headers = {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(body, secret)}
    base = f"http://127.0.0.1:{free_port()}"
    with (
        bindery("web", "--port", base.rsplit(":", 1)[1], log=tmp_path / "web.log", env=env),
        bindery(
            "worker",
            "--queues",
            "billing",
            "--processes",
            "1",
            "--threads",
            "2",
            log=tmp_path / "worker.log",
            env=env,
        ),
    ):
        wait_until(lambda: answers(f"{base}/healthz"), 20, "bindery web to answer")
        status, _, answer = call("POST", f"{base}/webhooks/stripe", body=json.loads(body), headers=headers)
        assert status == 200 and answer == {"received": True, "duplicate": False}

        async def subscription_status() -> str | None:
            conn = await connect(database_url)
            try:
                status: str | None = await conn.fetchval(
                    "SELECT status FROM subscriptions WHERE id = $1", sub_id
                )
                return status
            finally:
                await conn.close()

        wait_until(lambda: asyncio.run(subscription_status()) == "active", 30, "the subscription row")
