"""Worker processes for the end-to-end benchmarks: `bindery worker`, and the baseline of a
no-op Dramatiq actor run by Dramatiq's CLI with the same processes and threads."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
import redis

from bench.common import BINDERY, OUT, process, wait_until

PROCESSES, THREADS = 2, 8


def _ready(log_name: str) -> bool:
    path = OUT / log_name
    return path.exists() and path.read_text().count("Worker process is ready") >= PROCESSES


@contextmanager
def bindery_workers(env: dict[str, str], *queues: str) -> Iterator[None]:
    argv = [BINDERY, "worker", "--processes", str(PROCESSES), "--threads", str(THREADS)]
    if queues:
        argv += ["--queues", *queues]
    with process(argv, env, "worker.log"):
        wait_until(lambda: _ready("worker.log"), 30, "bindery workers")
        yield


def noop_messages_per_second(env: dict[str, str], count: int) -> float:
    """Enqueue `count` messages for the no-op actor; time until every one is acknowledged."""
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
        wait_until(lambda: _ready("noop-worker.log"), 30, "the no-op workers")
        messages: list[dramatiq.Message[object]] = [
            dramatiq.Message(
                queue_name="default",
                actor_name="bench.noop",
                args=(str(uuid.uuid4()),),
                kwargs={},
                options={},
            )
            for _ in range(count)
        ]
        started = time.perf_counter()
        for i in range(0, count, 500):
            enqueue_many(broker, messages[i : i + 500])
        wait_until(lambda: client.hlen("bench-noop:default.msgs") == 0, 600, "the no-op messages")
        return count / (time.perf_counter() - started)
