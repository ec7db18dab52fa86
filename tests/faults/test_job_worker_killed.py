"""Fault: `bindery worker` killed with SIGKILL in the middle of its jobs.

Redis hands a killed consumer's unacknowledged messages back once the consumer is gone
(and the jobs reconciler re-sends any job still queued or running past its lease), so a
second worker finishes everything. Bound on duplicates: the jobs running at the kill
(at most the worker's thread count) may run a second time.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import redis

from tests.http import answers, call
from tests.processes import bindery, bindery_env, equals, eventually, run_bindery
from workers.devstack.servers import free_port

JOBS, THREADS = 1000, 2


async def test_every_job_completes_after_its_worker_was_killed(
    pool: asyncpg.Pool, redis_client: redis.Redis, tmp_path: Path, record_property: Any
) -> None:
    env = bindery_env()
    created = run_bindery("token", "create", f"killed-{os.getpid()}", "--scope", "system", env=env)
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

    def worker(name: str) -> Any:
        argv = ("worker", "--processes", "1", "--threads", str(THREADS))
        return bindery(*argv, log=tmp_path / f"{name}.log", env=env)

    with bindery("web", "--port", str(port), log=tmp_path / "web.log", env=env):
        await eventually(lambda: answers(f"{base}/healthz"), 30, "bindery web")
        for _ in range(JOBS):
            status, _, body = call("POST", f"{base}/jobs/system.ping", body={}, headers=headers)
            assert status == 202
            job_ids.append(body["job_id"])
        with worker("worker-1") as first:
            await eventually(some_done, 60, "some jobs done")
            os.killpg(first.pid, signal.SIGKILL)  # the fault
            first.wait(10)
        killed_at = time.monotonic()
        left = JOBS - await done()
        assert left > 0, "the worker finished before the kill: the test proves nothing"
        # Past the reconciler's thresholds (moved, not waited for), as the scheduler would.
        await pool.execute(
            "UPDATE jobs SET updated_at = updated_at - interval '3 minutes' WHERE id = ANY($1::uuid[])",
            job_ids,
        )
        with worker("worker-2"):
            assert run_bindery("scheduler", "run-now", "jobs.reconcile", env=env).returncode == 0
            await eventually(lambda: equals(done(), JOBS), 90, "every job done")
        recovered = time.monotonic() - killed_at
    pings = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'system.ping' AND at >= "
        "(SELECT min(created_at) FROM jobs WHERE id = ANY($1::uuid[]))",
        job_ids,
    )
    assert JOBS <= pings <= JOBS + THREADS, pings
    record_property("lost", JOBS - await done())
    record_property("duplicated", pings - JOBS)
    record_property("recovery_s", round(recovered, 1))
