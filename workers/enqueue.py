"""Send many messages at once: one Redis round trip for a whole batch.

Dramatiq's `RedisBroker.enqueue` runs its Lua dispatch script once per message, a
round trip and a long command each; at thousands of jobs a second that alone
saturates the web process. Its enqueue only does, per message,
`HSET {ns}:{queue}.msgs id data` then `RPUSH {ns}:{queue} id` (see the layout at the
top of dramatiq's `brokers/redis/dispatch.lua`), so for a batch we send exactly
those, grouped per queue, in one MULTI/EXEC. Other brokers (RabbitMQ) enqueue one
message at a time through Dramatiq. tests/test_enqueue.py checks a real Dramatiq
worker consumes what this sends.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import dramatiq
import redis.asyncio
from dramatiq.brokers.redis import RedisBroker

from workers.ids import uuid4_batch

Messages = Sequence[dramatiq.Message[Any]]


_MESSAGE_FIELDS = tuple(field.name for field in dataclasses.fields(dramatiq.Message))


Call = tuple[dramatiq.Actor[Any, Any], tuple[Any, ...]]  # an actor and its arguments


def new_messages(calls: Sequence[Call]) -> list[dramatiq.Message[Any]]:
    """One message per (actor, args), the ids drawn in one batch (`actor.message` draws a
    `uuid4()` each: a few percent of the web process under load)."""
    message_ids = uuid4_batch(len(calls))
    return [
        dramatiq.Message(
            queue_name=actor.queue_name,
            actor_name=actor.actor_name,
            args=args,
            kwargs={},
            options={},
            message_id=str(message_id),
        )
        for (actor, args), message_id in zip(calls, message_ids, strict=True)
    ]


def _has_enqueue_hooks(broker: dramatiq.Broker) -> bool:
    """Whether any middleware acts on enqueues (none of bindery's does: the per-message
    hook calls then cost a few percent of the web process for nothing)."""
    base = dramatiq.Middleware
    return any(
        getattr(type(middleware), hook) is not getattr(base, hook)
        for middleware in broker.middleware
        for hook in ("before_enqueue", "after_enqueue")
    )


def _by_queue(broker: RedisBroker, messages: Messages) -> tuple[list[Any], dict[str, dict[str, bytes]]]:
    """Messages as `RedisBroker.enqueue` would store them, grouped by queue key."""
    prepared = []
    grouped: dict[str, dict[str, bytes]] = defaultdict(dict)
    hooks = _has_enqueue_hooks(broker)
    encoder = dramatiq.get_encoder()
    for message, redis_id in zip(messages, uuid4_batch(len(messages)), strict=True):
        if hooks:  # the hooks get the Message itself, as Dramatiq would give it
            message = message.copy(options={"redis_message_id": str(redis_id)})
            broker.emit_before("enqueue", message, None)
            prepared.append(message)
            data = message.asdict()
        else:  # the same data without building a second Message
            data = {name: getattr(message, name) for name in _MESSAGE_FIELDS}
            data["options"] = {**message.options, "redis_message_id": str(redis_id)}
        grouped[f"{broker.namespace}:{message.queue_name}"][str(redis_id)] = encoder.encode(data)
    return prepared, grouped


def _after_enqueue(broker: dramatiq.Broker, messages: list[Any]) -> None:
    for message in messages:  # empty without hooks
        broker.emit_after("enqueue", message, None)


def enqueue_many(broker: dramatiq.Broker, messages: Messages) -> None:
    """Enqueue `messages` (blocking). Middleware hooks run as for `broker.enqueue`."""
    if not isinstance(broker, RedisBroker):
        for message in messages:
            broker.enqueue(message)
        return
    prepared, grouped = _by_queue(broker, messages)
    with broker.client.pipeline(transaction=True) as pipeline:
        for queue_key, stored in grouped.items():
            pipeline.hset(f"{queue_key}.msgs", mapping=stored)  # type: ignore[arg-type]
            pipeline.rpush(queue_key, *stored)
        pipeline.execute()
    _after_enqueue(broker, prepared)


class AsyncRedisEnqueuer:
    """The same on the event loop, for the web process: no thread hand-off per batch."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.client: redis.asyncio.Redis = redis.asyncio.Redis(
            connection_pool=redis.asyncio.ConnectionPool(**broker.client.connection_pool.connection_kwargs)
        )

    async def enqueue_many(self, messages: Messages) -> None:
        prepared, grouped = _by_queue(self.broker, messages)
        async with self.client.pipeline(transaction=True) as pipeline:
            for queue_key, stored in grouped.items():
                pipeline.hset(f"{queue_key}.msgs", mapping=stored)  # type: ignore[arg-type]
                pipeline.rpush(queue_key, *stored)
            await pipeline.execute()
        _after_enqueue(self.broker, prepared)

    async def close(self) -> None:
        await self.client.aclose()
