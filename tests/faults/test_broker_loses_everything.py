"""Fault: the broker loses every message mid-run (Redis keeps nothing on disk).

Jobs are rows in Postgres and a message only says "go and look at row X", so losing
the messages loses no work: the jobs reconciler (every minute) re-sends what is queued
or was running when its worker lost track. The test moves the clock past the
reconciler's threshold instead of waiting for it, then runs the reconciler as the
scheduler would. Bound on duplicates: none, since a finished job is never run again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import asyncpg
import redis

from tests.http import answers, call
from tests.processes import bindery, bindery_env, equals, eventually, run_bindery
from workers.devstack.servers import free_port

JOBS = 1000


async def test_every_job_completes_once_after_the_broker_lost_all_its_messages(
    pool: asyncpg.Pool, redis_client: redis.Redis, tmp_path: Path, record_property: Any
) -> None:
    env = bindery_env()
    created = run_bindery("token", "create", f"faults-{os.getpid()}", "--scope", "system", env=env)
    assert created.returncode == 0, created.stderr
    headers = {"Authorization": f"Bearer {created.stdout.strip()}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    job_ids: list[str] = []

    async def done() -> int:
        count = await pool.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'done'", job_ids
        )
        return int(count)

    async def some_done() -> bool:
        return await done() >= 50

    with bindery("web", "--port", str(port), log=tmp_path / "web.log", env=env):
        await eventually(lambda: answers(f"{base}/healthz"), 30, "bindery web")
        for _ in range(JOBS):  # queued while no worker runs: the fault will find work to lose
            status, _, body = call("POST", f"{base}/jobs/system.ping", body={}, headers=headers)
            assert status == 202
            job_ids.append(body["job_id"])
        with bindery("worker", "--processes", "1", "--threads", "1", log=tmp_path / "worker.log", env=env):
            await eventually(some_done, 60, "some jobs done")
            # The fault: every message gone, mid-run. (FLUSHDB of the broker's database:
            # FLUSHALL would also empty a developer's `make run` stack on the same Redis.)
            redis_client.flushdb()
            faulted_at = time.monotonic()
            lost = JOBS - await done()
            assert lost > 0, "the worker finished before the fault: the test proves nothing"

            # A minute and a half later (moved, not waited for), the reconciler runs.
            await pool.execute(
                "UPDATE jobs SET updated_at = updated_at - interval '90 seconds' WHERE id = ANY($1::uuid[])",
                job_ids,
            )
            for _ in range(2):  # a message in flight may have been taken just before the flush
                assert run_bindery("scheduler", "run-now", "jobs.reconcile", env=env).returncode == 0
            await eventually(lambda: equals(done(), JOBS), 60, "every job done")
            recovered = time.monotonic() - faulted_at
    # Each ran once: one audit row per job, no job with a second attempt.
    pings = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'system.ping' AND at >= "
        "(SELECT min(created_at) FROM jobs WHERE id = ANY($1::uuid[]))",
        job_ids,
    )
    assert pings == JOBS
    assert await pool.fetchval("SELECT max(attempts) FROM jobs WHERE id = ANY($1::uuid[])", job_ids) == 1
    record_property("lost", JOBS - await done())
    record_property("duplicated", pings - JOBS)
    record_property("recovery_s", round(recovered, 1))
