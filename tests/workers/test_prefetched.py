"""A graceful stop hands back what the Redis consumer fetched but never started
(workers/prefetched.py), with a real Redis and Dramatiq's own consumer."""

from __future__ import annotations

from types import SimpleNamespace

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from tests.conftest import REDIS_URL
from workers.prefetched import ReturnPrefetched

QUEUE = "prefetch-test"


def _drain(broker: RedisBroker, prefetch: int) -> list[int]:
    """The arguments of every message a fresh consumer can fetch from the queue now."""
    consumer = broker.consume(QUEUE, prefetch=prefetch, timeout=10)
    seen: list[int] = []
    while (message := next(consumer)) is not None:
        seen.append(message.args[0])
        consumer.ack(message)
    return seen


def test_messages_cached_by_a_stopping_consumer_go_back_to_the_queue(redis_client: redis.Redis) -> None:
    broker = RedisBroker(url=REDIS_URL, namespace="prefetch-test")
    broker.declare_queue(QUEUE)
    for number in range(6):
        message: dramatiq.Message[None] = dramatiq.Message(
            queue_name=QUEUE, actor_name="noop", args=(number,), kwargs={}, options={}
        )
        broker.enqueue(message)

    consumer = broker.consume(QUEUE, prefetch=6, timeout=10)
    started = next(consumer)  # one fetch takes all six; one goes to a thread
    assert started is not None
    assert _drain(broker, 10) == [], "the other five wait in the stopping consumer's cache"

    ReturnPrefetched().before_consumer_thread_shutdown(broker, SimpleNamespace(consumer=consumer))

    assert sorted(_drain(broker, 10)) == sorted(set(range(6)) - {started.args[0]})
    consumer.ack(started)
    assert redis_client.zcard(f"prefetch-test:__acks__.{broker.broker_id}.{QUEUE}") == 0
