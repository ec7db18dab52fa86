"""Fault: the database restarts mid-run (a private throwaway cluster, not the shared one).

While it is down, `bindery web` answers 503 (Stripe and the customer area retry) and
the worker's attempts fail and are retried by the broker with backoff; once it is back,
every job completes. Bound on duplicates: a job whose run had reached the database but
whose "done" was lost runs again, so at most the worker's thread count of jobs (its work
in flight) have a second audit row.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from tests.faults.private_postgres import PrivatePostgres, private_postgres
from tests.http import answers, call
from tests.processes import bindery, bindery_env, equals, eventually, run_bindery
from workers.db import create_pool, migrate_database
from workers.devstack.servers import free_port

JOBS, THREADS = 600, 2


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[PrivatePostgres, str]]:
    with private_postgres() as server:
        url = server.url.rsplit("/", 1)[0] + "/bindery_fault"
        await migrate_database(url, create=True)
        yield server, url


async def test_every_job_completes_after_the_database_restarted_mid_run(
    cluster: tuple[PrivatePostgres, str], redis_client: redis.Redis, tmp_path: Path, record_property: Any
) -> None:
    server, url = cluster
    env = bindery_env(DATABASE_URL=url)
    created = run_bindery("token", "create", f"restart-{os.getpid()}", "--scope", "system", env=env)
    assert created.returncode == 0, created.stderr
    headers = {"Authorization": f"Bearer {created.stdout.strip()}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    job_ids: list[str] = []

    async def done(pool: asyncpg.Pool) -> int:
        count = await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'done'")
        return int(count)

    with bindery("web", "--port", str(port), log=tmp_path / "web.log", env=env):
        await eventually(lambda: answers(f"{base}/healthz"), 30, "bindery web")
        for _ in range(JOBS):
            status, _, body = call("POST", f"{base}/jobs/system.ping", body={}, headers=headers)
            assert status == 202
            job_ids.append(body["job_id"])
        worker = bindery(
            "worker", "--processes", "1", "--threads", str(THREADS), log=tmp_path / "worker.log", env=env
        )
        with worker:
            pool = await create_pool(url, max_size=1)

            async def some_done() -> bool:
                return await done(pool) > 50

            await eventually(some_done, 60, "some jobs done")
            await pool.close()

            server.stop()  # the fault
            faulted_at = time.monotonic()
            status, _, body = call("POST", f"{base}/jobs/system.ping", body={}, headers=headers)
            assert status == 503 and body["error"] == "database_unavailable"
            await asyncio.sleep(3)  # the outage itself, not a wait for a condition
            server.start()

            pool = await create_pool(url, max_size=1)
            try:
                await eventually(lambda: equals(done(pool), JOBS), 90, "every job done after the restart")
                record_property("recovery_s", round(time.monotonic() - faulted_at, 1))
                pings = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'system.ping'")
                assert JOBS <= pings <= JOBS + THREADS, pings
                record_property("lost", JOBS - await done(pool))
                record_property("duplicated", pings - JOBS)
                status, _, body = call("POST", f"{base}/jobs/system.ping", body={}, headers=headers)
                assert status == 202  # the web process found its database again
            finally:
                await pool.close()
