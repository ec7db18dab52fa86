"""Jobs per second from enqueue to done through Redis and `bindery worker`, against a
no-op Dramatiq actor run with the same processes and threads on the same Redis.

`BENCH_JOBS` jobs, default 20,000 (5,000 until 2026-12-01: a run of about two seconds).
"""

from __future__ import annotations

import asyncio
import os
import time

import redis

from bench.common import Result, bench_env, scratch_database
from bench.workers import PROCESSES, THREADS, bindery_workers, noop_messages_per_second
from workers.db import connect

JOBS = int(os.environ.get("BENCH_JOBS", "20000"))


async def _submit_and_wait(database_url: str) -> float:
    from tasks import system  # noqa: F401  (registers system.ping)
    from workers.job_requests import Submission, insert_submissions, send_jobs_in_thread

    conn = await connect(database_url)
    try:
        token_id = await conn.fetchval(
            "INSERT INTO api_tokens (name, secret_hash, scopes) VALUES ('bench', sha256('x'), '{system}') "
            "RETURNING id"
        )
        started = time.perf_counter()
        for _ in range(0, JOBS, 500):
            accepted = await insert_submissions(
                conn, [Submission("system.ping", {}, token_id, None) for _ in range(500)]
            )
            await send_jobs_in_thread([("system.ping", a.job_id) for a in accepted])
        # Every job is in the table by now: done when none is left queued or running
        # (the partial index answers that without reading the finished rows).
        while await conn.fetchval("SELECT EXISTS (SELECT FROM jobs WHERE status IN ('queued', 'running'))"):
            await asyncio.sleep(0.05)
        if await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'done'") != JOBS:
            raise RuntimeError("some jobs did not finish as done")
        return JOBS / (time.perf_counter() - started)
    finally:
        await conn.close()


def run() -> list[Result]:
    with scratch_database() as database_url:
        env = bench_env(database_url)
        redis.Redis.from_url(env["BROKER_URL"]).flushdb()
        baseline = noop_messages_per_second(env, JOBS)
        with bindery_workers(env):
            ours = asyncio.run(_submit_and_wait(database_url))
        redis.Redis.from_url(env["BROKER_URL"]).flushdb()
    return [
        Result(
            f"jobs end to end ({JOBS}, {PROCESSES}p×{THREADS}t)",
            ours,
            baseline,
            "jobs/s",
            "system.ping vs no-op actor",
        ),
    ]
