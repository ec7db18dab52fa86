"""Jobs per second from enqueue to done through Redis and `bindery worker`, against a
no-op Dramatiq actor run with the same processes and threads on the same Redis.

`BENCH_JOBS` jobs, default 20,000 (fewer make a run of a second or two, too short to
measure). Twice: as bindery sends jobs asked for together (several of the same job in a
message, up to the queue's `ids_per_message`), and then each job in a message of its own,
as when requests arrive one at a time.
"""

from __future__ import annotations

import asyncio
import os
import time
from uuid import UUID

import redis

from bench.common import Result, bench_env, scratch_database
from bench.workers import PROCESSES, THREADS, bindery_workers, noop_messages_per_second
from tasks import system  # noqa: F401  (registers system.ping)
from workers.db import connect
from workers.enqueue import enqueue_many, new_messages
from workers.job_requests import Accepted, Submission, insert_submissions, send_jobs_in_thread
from workers.jobs import JOBS as REGISTERED
from workers.queues import policy

JOBS = int(os.environ.get("BENCH_JOBS", "20000"))


async def _submit_and_wait(database_url: str, *, one_per_message: bool) -> float:
    ping = REGISTERED["system.ping"].actor

    async def send_one_per_message(ids: list[UUID]) -> None:
        await asyncio.to_thread(enqueue_many, ping.broker, new_messages([(ping, (str(i),)) for i in ids]))

    conn = await connect(database_url)
    try:
        token_id = await conn.fetchval(
            "INSERT INTO api_tokens (name, secret_hash, scopes) "
            "VALUES ($1::text, sha256($1::text::bytea), '{system}') RETURNING id",
            "bench-single" if one_per_message else "bench-grouped",
        )
        job_ids: list[UUID] = []
        started = time.perf_counter()
        for _ in range(0, JOBS, 500):
            accepted = await insert_submissions(
                conn, [Submission("system.ping", {}, token_id, None) for _ in range(500)]
            )
            ids = [a.job_id for a in accepted if isinstance(a, Accepted)]
            job_ids += ids
            if one_per_message:
                await send_one_per_message(ids)
            else:
                await send_jobs_in_thread([("system.ping", job_id) for job_id in ids])
        # Every job is in the table by now: done when none is left queued or running
        # (the partial index answers that without reading the finished rows).
        while await conn.fetchval("SELECT EXISTS (SELECT FROM jobs WHERE status IN ('queued', 'running'))"):
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        done = await conn.fetchval(
            "SELECT count(*) FROM jobs WHERE status = 'done' AND id = ANY($1)", job_ids
        )
        if done != JOBS:
            raise RuntimeError(f"{JOBS - done} jobs did not finish as done")
        return JOBS / elapsed
    finally:
        await conn.close()


def run() -> list[Result]:
    with scratch_database() as database_url:
        env = bench_env(database_url)
        redis.Redis.from_url(env["BROKER_URL"]).flushdb()
        baseline = noop_messages_per_second(env, JOBS)
        with bindery_workers(env):
            grouped = asyncio.run(_submit_and_wait(database_url, one_per_message=False))
            single = asyncio.run(_submit_and_wait(database_url, one_per_message=True))
        redis.Redis.from_url(env["BROKER_URL"]).flushdb()
    per_message = policy(REGISTERED["system.ping"].queue).ids_per_message
    return [
        Result(
            f"jobs end to end ({JOBS}, {PROCESSES}p×{THREADS}t)",
            grouped,
            baseline,
            "jobs/s",
            f"system.ping, up to {per_message} a message, vs no-op actor",
        ),
        Result(
            "  the same, one job a message",
            single,
            baseline,
            "jobs/s",
            "system.ping vs no-op actor",
        ),
    ]
