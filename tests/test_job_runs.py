"""`run_job` and the jobs reconciler, called directly with real rows."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import redis

from tasks.system import PingArguments
from workers.job_requests import requeue_stale_jobs, send_jobs_in_thread
from workers.jobs import JobError, run_job
from workers.resources import Resources
from workers.settings import load_settings


async def _queued_job(pool: asyncpg.Pool, age: timedelta = timedelta(0)) -> uuid.UUID:
    job_id = uuid.uuid4()
    await pool.execute(
        """INSERT INTO jobs (id, name, arguments, updated_at)
           VALUES ($1, 'system.ping', '{}', now() - $2::interval)""",
        job_id,
        age,
    )
    return job_id


async def test_a_failing_job_is_requeued_then_failed_after_its_retries(pool: asyncpg.Pool) -> None:
    resources = Resources(settings=load_settings(), pool=pool)
    job_id = await _queued_job(pool)

    async def broken(resources: Resources, arguments: Any) -> None:
        raise JobError("instance 12 is unreachable")

    with pytest.raises(JobError):
        await run_job(resources, job_id, broken, PingArguments, max_retries=1)
    row = await pool.fetchrow("SELECT status, attempts, error FROM jobs WHERE id = $1", job_id)
    assert (row["status"], row["attempts"], row["error"]) == ("queued", 1, "instance 12 is unreachable")

    await run_job(resources, job_id, broken, PingArguments, max_retries=1)  # last attempt: no raise
    row = await pool.fetchrow("SELECT status, attempts FROM jobs WHERE id = $1", job_id)
    assert (row["status"], row["attempts"]) == ("failed", 2)


async def test_driver_errors_are_stored_without_their_message(pool: asyncpg.Pool) -> None:
    resources = Resources(settings=load_settings(), pool=pool)
    job_id = await _queued_job(pool)

    async def leaky(resources: Resources, arguments: Any) -> None:
        raise ValueError("duplicate key: jeanne@example.fr")

    await run_job(resources, job_id, leaky, PingArguments, max_retries=0)
    assert await pool.fetchval("SELECT error FROM jobs WHERE id = $1", job_id) == "ValueError"


async def test_a_finished_job_is_not_run_again(pool: asyncpg.Pool) -> None:
    resources = Resources(settings=load_settings(), pool=pool)
    job_id = await _queued_job(pool)
    runs = 0

    async def counting(resources: Resources, arguments: Any) -> dict[str, int]:
        nonlocal runs
        runs += 1
        return {"runs": runs}

    await run_job(resources, job_id, counting, PingArguments, max_retries=3)
    await run_job(resources, job_id, counting, PingArguments, max_retries=3)
    assert runs == 1
    assert await pool.fetchval("SELECT result FROM jobs WHERE id = $1", job_id) == {"runs": 1}


async def test_concurrent_jobs_share_claims_and_each_keeps_its_own_result(pool: asyncpg.Pool) -> None:
    """Claims and "done" marks of concurrent jobs go in batches; none is lost or mixed up,
    and a finished job inside a batch is still not run again."""
    resources = Resources(settings=load_settings(), pool=pool)
    job_ids = [await _queued_job(pool) for _ in range(20)]
    await pool.execute("UPDATE jobs SET status = 'done', result = '{}' WHERE id = $1", job_ids[0])
    ran: list[uuid.UUID] = []

    def echoing(job_id: uuid.UUID) -> Any:
        async def handler(resources: Resources, arguments: Any) -> dict[str, str]:
            ran.append(job_id)
            await asyncio.sleep(0)
            return {"job": str(job_id)}

        return handler

    await asyncio.gather(
        *(run_job(resources, job_id, echoing(job_id), PingArguments, max_retries=0) for job_id in job_ids)
    )
    assert sorted(ran) == sorted(job_ids[1:])
    rows = await pool.fetch("SELECT id, status, attempts, result FROM jobs WHERE id = ANY($1)", job_ids[1:])
    assert {(row["status"], row["attempts"]) for row in rows} == {("done", 1)}
    assert all(row["result"] == {"job": str(row["id"])} for row in rows)


async def test_reconciler_resends_jobs_the_broker_lost(pool: asyncpg.Pool, redis_client: redis.Redis) -> None:
    stale = await _queued_job(pool, timedelta(minutes=5))
    fresh = await _queued_job(pool)
    sent = await requeue_stale_jobs(pool, send_jobs_in_thread)
    assert sent >= 1
    queued = [message.decode() for message in redis_client.hvals("bindery:default.msgs")]
    assert any(str(stale) in message for message in queued)
    assert not any(str(fresh) in message for message in queued)
    # Its clock moved: the next sweep does not send it again at once.
    assert await requeue_stale_jobs(pool, send_jobs_in_thread) == 0
