"""`run_job` and the jobs reconciler, called directly with real rows."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import redis

from tasks.system import PingArguments, record_ping
from workers.audit_log import AuditRecord
from workers.db import create_pool
from workers.errors import JobError, Refused
from workers.job_requests import requeue_stale_jobs, send_jobs_in_thread
from workers.job_rows import CLAIM, JobRows
from workers.jobs import Done, current_job_id, run_job
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


async def test_a_refused_job_fails_at_once_and_its_handler_knows_its_id(pool: asyncpg.Pool) -> None:
    resources = Resources(settings=load_settings(), pool=pool)
    job_id = await _queued_job(pool)
    seen: list[uuid.UUID | None] = []

    async def refusing(resources: Resources, arguments: Any) -> None:
        seen.append(current_job_id())
        raise Refused("account 12 is being erased")

    await run_job(resources, job_id, refusing, PingArguments, max_retries=5)  # no raise: no retry
    row = await pool.fetchrow("SELECT status, attempts, error FROM jobs WHERE id = $1", job_id)
    assert (row["status"], row["attempts"], row["error"]) == ("failed", 1, "account 12 is being erased")
    assert seen == [job_id] and current_job_id() is None


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


async def test_audit_records_a_handler_returns_commit_with_its_done_mark(pool: asyncpg.Pool) -> None:
    resources = Resources(settings=load_settings(), pool=pool)
    job_ids = [await _queued_job(pool) for _ in range(6)]

    def auditing(job_id: uuid.UUID) -> Any:
        async def handler(resources: Resources, arguments: Any) -> Done:
            records = (AuditRecord("system", "test.done.a", "job", str(job_id), {"n": 1}),)
            return Done(
                {"job": str(job_id)}, (*records, AuditRecord("system", "test.done.b", "job", str(job_id)))
            )

        return handler

    await asyncio.gather(
        *(run_job(resources, job_id, auditing(job_id), PingArguments, max_retries=0) for job_id in job_ids)
    )
    rows = await pool.fetch(
        """SELECT j.id, j.status, j.result, j.xmin::text AS job_tx,
                  array_agg(a.action ORDER BY a.action) AS actions,
                  array_agg(DISTINCT a.xmin::text) AS audit_tx
             FROM jobs j JOIN audit_log a ON a.subject_type = 'job' AND a.subject_id = j.id::text
            WHERE j.id = ANY($1) GROUP BY j.id""",
        job_ids,
    )
    assert len(rows) == len(job_ids)
    for row in rows:
        assert (row["status"], row["result"]) == ("done", {"job": str(row["id"])})
        assert row["actions"] == ["test.done.a", "test.done.b"]
        assert row["audit_tx"] == [row["job_tx"]]  # one transaction for the mark and the records


async def test_a_job_finished_meanwhile_gets_no_second_audit_record(pool: asyncpg.Pool) -> None:
    """A duplicate message's run that ends after the first: the job is done once, audited once."""
    rows = JobRows(pool)
    job_id = await _queued_job(pool)
    assert await rows.claim(job_id) is not None
    record = AuditRecord("system", "test.done.once", "job", str(job_id))

    await rows.finish(job_id, {"run": 1}, [record])
    await rows.finish(job_id, {"run": 2}, [record])

    assert await pool.fetchval("SELECT result FROM jobs WHERE id = $1", job_id) == {"run": 1}
    audited = await pool.fetchval("SELECT count(*) FROM audit_log WHERE subject_id = $1", str(job_id))
    assert audited == 1


async def test_ping_records_that_it_ran_with_its_done_mark(pool: asyncpg.Pool) -> None:
    resources = Resources(settings=load_settings(), pool=pool)
    job_id = await _queued_job(pool)
    before = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'system.ping'")

    await run_job(resources, job_id, record_ping, PingArguments, max_retries=0)

    row = await pool.fetchrow("SELECT status, result, xmin::text AS tx FROM jobs WHERE id = $1", job_id)
    assert row["status"] == "done" and row["result"]["pong"] is True
    audited = await pool.fetch("SELECT xmin::text AS tx FROM audit_log WHERE action = 'system.ping'")
    assert len(audited) == before + 1
    assert row["tx"] in {record["tx"] for record in audited}


async def test_a_claim_reads_only_the_primary_key_even_without_statistics(pool: asyncpg.Pool) -> None:
    """Right after a burst of requests the planner's statistics say the table is nearly empty.
    A claim then must still look its jobs up by id alone: reading the unfinished-jobs index
    too costs every batch as much as the backlog is long."""
    async with pool.acquire() as conn, conn.transaction():
        # A temporary `jobs` hides the real one for this session; autovacuum never analyses it.
        await conn.execute("CREATE TEMPORARY TABLE jobs (LIKE public.jobs INCLUDING ALL) ON COMMIT DROP")
        await conn.execute(
            "INSERT INTO jobs (id, name, arguments) SELECT gen_random_uuid(), 'system.ping', '{}' "
            "FROM generate_series(1, 5000)"
        )
        job_ids = [row["id"] for row in await conn.fetch("SELECT id FROM jobs LIMIT 8")]
        primary_key = await conn.fetchval(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'pg_temp.jobs'::regclass AND contype = 'p'"
        )
        plan = "\n".join(row[0] for row in await conn.fetch("EXPLAIN " + CLAIM, job_ids))
    assert set(re.findall(r"(?:Index Scan|Index Only Scan) (?:on|using) (\w+)", plan)) == {primary_key}, plan


async def test_done_marks_read_no_more_than_their_jobs_once_a_backlog_grew(database_url: str) -> None:
    """Postgres may keep, after five runs of a statement, one plan made for any parameters
    and costed on the table as it was. Made on a nearly empty `jobs`, the "done" marks' plan
    read every unfinished job, for every batch, once a backlog had grown."""
    pool = await create_pool(database_url, max_size=1)  # one backend: its statistics are ours
    try:
        # A temporary `jobs` hides the real one on this connection; autovacuum never analyses it.
        await pool.execute("CREATE TEMPORARY TABLE jobs (LIKE public.jobs INCLUDING ALL)")
        unfinished_index = await pool.fetchval(
            """SELECT indexrelid FROM pg_index
                WHERE indrelid = 'pg_temp.jobs'::regclass AND indpred IS NOT NULL""",
        )
        rows = JobRows(pool)
        for _ in range(10):  # a small table, time enough for a plan made once
            job_id = await _queued_job(pool)
            assert await rows.claim(job_id) is not None
            await rows.finish(job_id, {})
        await pool.execute(
            "INSERT INTO jobs (id, name, arguments) SELECT gen_random_uuid(), 'system.ping', '{}' "
            "FROM generate_series(1, 5000)"
        )
        job_id = await _queued_job(pool)
        assert await rows.claim(job_id) is not None

        before = await _index_reads(pool, unfinished_index)
        await rows.finish(job_id, {})
        assert await _index_reads(pool, unfinished_index) - before < 10
        assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "done"
    finally:
        await pool.close()


async def _index_reads(pool: asyncpg.Pool, index: int) -> int:
    """Entries this index returned so far, the backend's last transactions included."""
    await pool.execute("SELECT pg_stat_force_next_flush()")  # flushed as the backend goes idle
    reads: int = await pool.fetchval("SELECT pg_stat_get_tuples_returned($1)", index)
    return reads


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
