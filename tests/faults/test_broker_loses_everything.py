"""Fault: the broker loses every message mid-run (Redis keeps nothing on disk).

Jobs are rows in Postgres and a message only says "go and look at row X", so losing
the messages loses no work: the jobs reconciler (every minute) re-sends what is queued
or was running when its worker lost track. The test moves the clock past the
reconciler's threshold instead of waiting for it, then runs the reconciler as the
scheduler would. Bound on duplicates: none, since a finished job is never run again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import asyncpg
import redis

from tests.faults.pings import Pings, web_with_pings
from tests.processes import bindery, eventually, run_bindery

JOBS = 1000


async def test_every_job_completes_once_after_the_broker_lost_all_its_messages(
    own_jobs_database: tuple[asyncpg.Pool, dict[str, str]],
    redis_client: redis.Redis,
    tmp_path: Path,
    record_property: Any,
) -> None:
    pool, env = own_jobs_database
    async with web_with_pings(env, tmp_path, JOBS) as web:
        pings = Pings(pool, web.job_ids)
        with bindery("worker", "--processes", "1", "--threads", "1", log=tmp_path / "worker.log", env=env):
            await eventually(pings.some_done, 60, "some jobs done")
            # The fault: every message gone, mid-run. (FLUSHDB of the broker's database:
            # FLUSHALL would also empty a developer's `make run` stack on the same Redis.)
            redis_client.flushdb()
            faulted_at = time.monotonic()
            assert await pings.done() < JOBS, "the worker finished before the fault: the test proves nothing"

            await pings.age(90)  # a minute and a half later, the reconciler runs
            for _ in range(2):  # a message in flight may have been taken just before the flush
                assert run_bindery("scheduler", "run-now", "system.resend_lost_jobs", env=env).returncode == 0
            await eventually(pings.all_done, 60, "every job done")
            recovered = time.monotonic() - faulted_at
    # Each ran once: one audit row per job, no job with a second attempt.
    runs = await pings.runs()
    assert runs == JOBS
    assert await pool.fetchval("SELECT max(attempts) FROM jobs WHERE id = ANY($1::uuid[])", web.job_ids) == 1
    record_property("lost", JOBS - await pings.done())
    record_property("duplicated", runs - JOBS)
    record_property("recovery_s", round(recovered, 1))
