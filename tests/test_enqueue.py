"""Batched enqueueing stores messages exactly as Dramatiq's own consumers expect them."""

from __future__ import annotations

import threading

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from tests.conftest import REDIS_URL
from tests.processes import eventually
from workers.enqueue import AsyncRedisEnqueuer, enqueue_many


def _broker_with_recorder() -> tuple[RedisBroker, list[str], threading.Lock]:
    broker = RedisBroker(url=REDIS_URL, namespace="enqueue-test")
    seen: list[str] = []
    lock = threading.Lock()

    def record(value: str) -> None:
        with lock:
            seen.append(value)

    dramatiq.actor(actor_name="record", queue_name="default", broker=broker)(record)
    dramatiq.actor(actor_name="record_mail", queue_name="mail", broker=broker)(record)
    return broker, seen, lock


def _messages(count: int, actor: str, queue: str) -> list[dramatiq.Message[object]]:
    return [
        dramatiq.Message(queue_name=queue, actor_name=actor, args=(f"{actor}-{i}",), kwargs={}, options={})
        for i in range(count)
    ]


async def test_a_real_worker_consumes_every_batched_message_once(redis_client: redis.Redis) -> None:
    broker, seen, _ = _broker_with_recorder()
    enqueue_many(broker, _messages(300, "record", "default") + _messages(50, "record_mail", "mail"))
    enqueuer = AsyncRedisEnqueuer(broker)
    await enqueuer.enqueue_many(_messages(150, "record", "default"))
    await enqueuer.close()
    worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
    worker.start()
    try:
        await eventually(lambda: len(seen) >= 500, 20, "the worker to consume every message")
        worker.join()
    finally:
        worker.stop()
    assert len(seen) == 500
    assert sorted(set(seen)) == sorted(
        {f"record-{i}" for i in range(300)} | {f"record_mail-{i}" for i in range(50)}
    )
    assert redis_client.hlen("enqueue-test:default.msgs") == 0
