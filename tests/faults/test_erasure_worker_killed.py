"""Fault: the erasure worker killed with SIGKILL in the middle of an erasure.

A `bindery worker` killed with SIGKILL in the middle of an erasure: what it finished
stays finished, and the next worker, once the lease ends, finishes the rest."""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import redis

from tasks.erasure.actors import run, run_due
from tasks.erasure.requests import request_erasure
from tests.erasure_scenario import database_exists, make_customer, objects_under, remove_databases
from tests.processes import bindery, bindery_env, eventually
from workers.db import connect
from workers.resources import Resources


@pytest.fixture
def resources(worker_resources: Resources) -> Resources:
    return worker_resources


async def _worker_waits_on_a_lock(pool: asyncpg.Pool) -> bool:
    return bool(
        await pool.fetchval(
            """SELECT count(*) FROM pg_stat_activity
                WHERE wait_event_type = 'Lock' AND application_name = 'bindery-worker'"""
        )
    )


async def _no_worker(pool: asyncpg.Pool) -> bool:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bindery-worker'"
    )
    return count == 0


async def test_a_worker_killed_mid_erasure_leaves_the_rest_to_the_next_one(
    resources: Resources, database_url: str, stripe_fake: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    pool = resources.pool
    customer = await make_customer(resources, database_url, instances=1)
    try:
        async with pool.acquire() as conn:
            request, _ = await request_erasure(
                conn, customer.account_id, grace=timedelta(0), requested_by="test"
            )
        request_id = request["id"]

        async def steps() -> dict[str, tuple[bool, int]]:
            rows = await pool.fetch(
                "SELECT step, finished_at, attempts FROM erasure_steps WHERE request_id = $1", request_id
            )
            return {row["step"]: (row["finished_at"] is not None, row["attempts"]) for row in rows}

        # Hold one of the account's rows so that the worker stops inside the `rows` step.
        holder = await connect(database_url)
        await holder.execute("BEGIN")
        await holder.execute(
            "SELECT 1 FROM subscriptions WHERE id = $1 FOR UPDATE", customer.object_ids["subscription"]
        )
        env = bindery_env(STRIPE_API_BASE=stripe_fake)
        worker_args = ("worker", "--processes", "1", "--threads", "1", "--queues", "erasure", "default")
        with bindery(*worker_args, log=tmp_path / "worker-1.log", env=env) as worker:
            run.send(request_id)
            await eventually(lambda: _worker_waits_on_a_lock(pool), 60, "the worker to be inside `rows`")
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        await holder.close()
        await eventually(lambda: _no_worker(pool), 30, "the dead worker's sessions to end")

        done_before = await steps()
        assert all(done_before[name][0] for name in ("disable", "stripe_customer", "instance_databases"))
        assert done_before["backup_objects"][0] and done_before["rows"] == (False, 1)
        assert not await database_exists(pool, customer.database_urls[0])
        assert await objects_under(resources, customer.instance_ids[0]) == 0
        assert (
            await pool.fetchval("SELECT state FROM erasure_requests WHERE id = $1", request_id) == "running"
        )
        assert await pool.fetchval("SELECT count(*) FROM accounts WHERE id = $1", customer.account_id) == 1

        # The lease runs out (moved, not waited for); the scheduler's sweep sends it again.
        await pool.execute(
            "UPDATE erasure_requests SET lease_until = now() - interval '1 second' WHERE id = $1", request_id
        )
        with bindery(*worker_args, log=tmp_path / "worker-2.log", env=env):
            run_due.send()

            async def finished() -> bool:
                state = await pool.fetchval("SELECT state FROM erasure_requests WHERE id = $1", request_id)
                return bool(state == "done")

            await eventually(finished, 60, "the next worker to finish the erasure")
        after = await steps()
        assert after["rows"] == (True, 2) and after["stripe_customer"] == (True, 1)
        assert await pool.fetchval("SELECT count(*) FROM accounts WHERE id = $1", customer.account_id) == 0
    finally:
        await remove_databases(customer)
