"""Fault: `bindery worker` killed with SIGKILL in the middle of its jobs.

Redis hands a killed consumer's unacknowledged messages back once the consumer is gone,
and the jobs reconciler re-sends any job still queued or running past its lease, so a
second worker finishes everything. Bound on duplicates: the jobs running at the kill
(at most the worker's thread count times the jobs a message carries) may run a second time.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import redis

from tests.faults.pings import Pings, ping_worker, web_with_pings
from tests.processes import eventually, run_bindery
from workers.queues import policy

JOBS, THREADS = 1000, 2


async def test_every_job_completes_after_its_worker_was_killed(
    own_jobs_database: tuple[asyncpg.Pool, dict[str, str]],
    redis_client: redis.Redis,
    tmp_path: Path,
    record_property: Any,
) -> None:
    pool, env = own_jobs_database

    async with web_with_pings(env, tmp_path, JOBS) as web:
        pings = Pings(pool, web.job_ids)
        with ping_worker(env, tmp_path / "worker-1.log", THREADS) as first:
            await eventually(pings.some_done, 60, "some jobs done")
            os.killpg(first.pid, signal.SIGKILL)  # the fault
            first.wait(10)
        killed_at = time.monotonic()
        assert await pings.done() < JOBS, "the worker finished before the kill: the test proves nothing"
        await pings.age(180)  # past the reconciler's thresholds, as if three minutes went by
        with ping_worker(env, tmp_path / "worker-2.log", THREADS):
            assert run_bindery("scheduler", "run-now", "system.resend_lost_jobs", env=env).returncode == 0
            await eventually(pings.all_done, 90, "every job done")
        recovered = time.monotonic() - killed_at
    runs = await pings.runs()
    assert JOBS <= runs <= JOBS + THREADS * policy("default").ids_per_message, runs
    record_property("lost", JOBS - await pings.done())
    record_property("duplicated", runs - JOBS)
    record_property("recovery_s", round(recovered, 1))
