"""Jobs per second from enqueue to done through Redis and `bindery worker`, against a
no-op Dramatiq actor run with the same processes and threads on the same Redis."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import dramatiq
import redis

from bench.common import BINDERY, OUT, Result, bench_env, process, scratch_database, wait_until
from workers.db import connect

JOBS = 5000
PROCESSES, THREADS = 2, 8


def _workers_ready(log_name: str) -> bool:
    path = OUT / log_name
    return path.exists() and path.read_text().count("Worker process is ready") >= PROCESSES


def _baseline(env: dict[str, str]) -> float:
    from bench.noop_worker import broker
    from workers.enqueue import enqueue_many

    client = redis.Redis.from_url(env["BROKER_URL"])
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "bench.noop_worker:broker",
        "--processes",
        str(PROCESSES),
        "--threads",
        str(THREADS),
    ]
    with process(argv, env, "noop-worker.log"):
        wait_until(lambda: _workers_ready("noop-worker.log"), 30, "the no-op workers")
        messages: list[dramatiq.Message[object]] = [
            dramatiq.Message(
                queue_name="default",
                actor_name="bench.noop",
                args=(str(uuid.uuid4()),),
                kwargs={},
                options={},
            )
            for _ in range(JOBS)
        ]
        started = time.perf_counter()
        for i in range(0, JOBS, 500):
            enqueue_many(broker, messages[i : i + 500])
        wait_until(lambda: client.hlen("bench-noop:default.msgs") == 0, 300, "the no-op jobs")
        return JOBS / (time.perf_counter() - started)


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
        while await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'done'") < JOBS:
            await asyncio.sleep(0.05)
        return JOBS / (time.perf_counter() - started)
    finally:
        await conn.close()


def run() -> list[Result]:
    with scratch_database() as database_url:
        env = bench_env(database_url)
        redis.Redis.from_url(env["BROKER_URL"]).flushdb()
        baseline = _baseline(env)
        argv = [BINDERY, "worker", "--processes", str(PROCESSES), "--threads", str(THREADS)]
        with process(argv, env, "worker.log"):
            wait_until(lambda: _workers_ready("worker.log"), 30, "bindery workers")
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
