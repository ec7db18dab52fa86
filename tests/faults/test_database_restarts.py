"""Fault: the database restarts mid-run (a private throwaway cluster, not the shared one).

While it is down, `bindery web` answers 503 (Stripe and the customer area retry) and
the worker's attempts fail and are retried by the broker with backoff; once it is back,
every job completes. Bound on duplicates: a job whose run had reached the database but
whose "done" was lost runs again, so at most the worker's thread count of jobs (its work
in flight) have a second audit row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.faults.pings import Pings, web_with_pings
from tests.faults.private_postgres import PrivatePostgres, private_postgres
from tests.processes import bindery, bindery_env, eventually
from workers.db import create_pool, migrate_database

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
    async with web_with_pings(env, tmp_path, JOBS) as web:
        worker = bindery(
            "worker", "--processes", "1", "--threads", str(THREADS), log=tmp_path / "worker.log", env=env
        )
        with worker:
            pool = await create_pool(url, max_size=1)
            await eventually(Pings(pool, web.job_ids).some_done, 60, "some jobs done")
            await pool.close()

            server.stop()  # the fault
            faulted_at = time.monotonic()
            status, body = web.ping()
            assert status == 503 and body["error"] == "database_unavailable"
            await asyncio.sleep(3)  # the outage itself, not a wait for a condition
            server.start()

            pool = await create_pool(url, max_size=1)
            try:
                pings = Pings(pool, web.job_ids)
                await eventually(pings.all_done, 90, "every job done after the restart")
                record_property("recovery_s", round(time.monotonic() - faulted_at, 1))
                runs = await pings.runs()
                assert JOBS <= runs <= JOBS + THREADS, runs
                record_property("lost", JOBS - await pings.done())
                record_property("duplicated", runs - JOBS)
                assert web.ping()[0] == 202  # the web process found its database again
            finally:
                await pool.close()
