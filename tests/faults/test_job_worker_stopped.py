"""`bindery worker` stopped with SIGTERM (a deploy, a scale-down) in the middle of its jobs.

A graceful stop is not a crash: the jobs already running finish and their outcome is
recorded before the process lets go of its database pool, and the messages not started
go back to the broker, those its consumer had fetched ahead included (workers/prefetched.py).
So nothing is left for the reconciler, and nothing runs twice.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import asyncpg
import redis

from tests.faults.pings import Pings, ping_worker, web_with_pings
from tests.processes import eventually

JOBS, THREADS = 1000, 2


async def test_jobs_running_at_a_graceful_stop_finish_once(
    own_jobs_database: tuple[asyncpg.Pool, dict[str, str]],
    redis_client: redis.Redis,
    tmp_path: Path,
    record_property: Any,
) -> None:
    pool, env = own_jobs_database

    async with web_with_pings(env, tmp_path, JOBS) as web:
        pings = Pings(pool, web.job_ids)
        log = tmp_path / "worker-1.log"
        with ping_worker(env, log, THREADS) as first:
            await eventually(pings.some_done, 60, "some jobs done")
            # To the whole group, as systemd's default does: each worker process gets it
            # directly and again from Dramatiq's main process (workers/stop_signal.py).
            # The two copies may come close enough to be taken as one by Python itself;
            # one more, once the first was handled, makes sure the test sees two.
            os.killpg(first.pid, signal.SIGTERM)
            await eventually(lambda: "Stopping worker process" in log.read_text(), 10, "the stop begun")
            for child in Path(f"/proc/{first.pid}/task/{first.pid}/children").read_text().split():
                os.kill(int(child), signal.SIGTERM)
            assert first.wait(30) == 0
        stop_log = log.read_text()
        assert "Failed to process message" not in stop_log, "a job failed because the worker was stopping"
        stopped_with = await pings.done()
        assert stopped_with < JOBS, "the worker finished before the stop: the test proves nothing"
        left = await pool.fetch(
            "SELECT status, error FROM jobs"
            " WHERE id = ANY($1::uuid[]) AND (status = 'running' OR error IS NOT NULL)",
            web.job_ids,
        )
        assert left == [], "jobs the stopped worker left running or failed"
        assert await pings.runs() == stopped_with
        held = {key: redis_client.zcard(key) for key in redis_client.scan_iter("bindery:__acks__.*")}
        assert not any(held.values()), f"messages still held for the stopped worker: {held}"
        # No reconciler, no waiting for a lease: the next worker takes the rest from the broker.
        with ping_worker(env, tmp_path / "worker-2.log", THREADS):
            await eventually(pings.all_done, 90, "every job done")
    record_property("lost", JOBS - await pings.done())
    record_property("duplicated", await pings.runs() - JOBS)
    assert await pings.runs() == JOBS
    assert await pool.fetchval("SELECT max(attempts) FROM jobs WHERE id = ANY($1::uuid[])", web.job_ids) == 1
