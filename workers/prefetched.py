"""Messages a Redis consumer fetched but never handed out go back to their queue at a stop.

Dramatiq's Redis consumer fetches up to its prefetch count in one call, moving those
messages into the worker's "acks" set, and keeps the ones it has not yet handed to a
worker thread in a local cache. A graceful stop requeues what sits in the work queue,
but not that cache: those messages stay in the acks set of a worker that is gone, until
another worker's maintenance declares it dead (a heartbeat timeout, then a random
chance per command) — a minute or more in which the jobs look lost. RabbitMQ needs
none of this: closing the channel returns every unacked message.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker


class ReturnPrefetched(dramatiq.Middleware):
    """When a consumer thread stops, requeue the messages left in its consumer's cache."""

    def before_consumer_thread_shutdown(self, broker: dramatiq.Broker, thread: Any) -> None:
        consumer = getattr(thread, "consumer", None)
        if isinstance(broker, RedisBroker) and consumer is not None:
            return_prefetched(broker, consumer)


def return_prefetched(broker: RedisBroker, consumer: Any) -> int:
    """Move the consumer's cached, never started messages back to its queue; how many."""
    cached = [data for data in getattr(consumer, "message_cache", []) if data is not None]
    if not cached:
        return 0
    ids = [Message.decode(data).options["redis_message_id"] for data in cached]
    broker.do_requeue(consumer.queue_name, *ids)
    consumer.message_cache = []
    return len(ids)
