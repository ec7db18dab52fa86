"""Send many messages at once: one Redis round trip for a whole batch.

Dramatiq's `RedisBroker.enqueue` runs its Lua dispatch script once per message, a
round trip and a long command each; at thousands of jobs a second that alone
saturates the web process. Its enqueue only does, per message,
`HSET {ns}:{queue}.msgs id data` then `RPUSH {ns}:{queue} id` (see the layout at the
top of dramatiq's `brokers/redis/dispatch.lua`), so for a batch we send exactly
those, grouped per queue, in one MULTI/EXEC. Other brokers (RabbitMQ) enqueue one
message at a time through Dramatiq. tests/workers/test_enqueue.py checks a real Dramatiq
worker consumes what this sends.

The transaction is written in Redis's wire format here and sent on a connection of the
client's pool: redis-py's pipeline encodes every argument through several layers, and
for a batch of 32 messages that cost more than encoding the messages themselves.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
import redis
import redis.asyncio
from dramatiq.brokers.redis import RedisBroker
from redis.exceptions import ResponseError

from workers.ids import uuid4_batch

Messages = Sequence[dramatiq.Message[Any]]
Call = tuple[dramatiq.Actor[Any, Any], tuple[Any, ...]]  # an actor and its arguments
Grouped = dict[bytes, dict[bytes, bytes]]  # queue key -> {Redis message id: encoded message}

# What dramatiq's JSONEncoder produces (`json.dumps(data, separators=(",", ":"))`),
# without building an encoder for every message as `json.dumps` does with arguments.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def new_messages(calls: Sequence[Call]) -> list[dramatiq.Message[Any]]:
    """One message per (actor, args), the ids drawn in one batch (`actor.message` draws a
    `uuid4()` each: a few percent of the web process under load)."""
    message_ids = uuid4_batch(len(calls))
    now = int(time.time() * 1000)
    return [
        dramatiq.Message(
            queue_name=actor.queue_name,
            actor_name=actor.actor_name,
            args=args,
            kwargs={},
            options={},
            message_id=str(message_id),
            message_timestamp=now,
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


def _redis_ids(count: int) -> list[str]:
    """Each message's key in Redis. Dramatiq only looks messages up by it, so any unique
    text does: 32 random hex digits, cut from one `os.urandom` call."""
    digits = os.urandom(16 * count).hex()
    return [digits[i : i + 32] for i in range(0, 32 * count, 32)]


def _encode() -> Callable[[dict[str, Any]], bytes]:
    encoder = dramatiq.get_encoder()
    if type(encoder) is dramatiq.JSONEncoder:
        return lambda data: _COMPACT_JSON.encode(data).encode()
    return encoder.encode


def _by_queue(broker: RedisBroker, messages: Messages) -> tuple[list[Any], Grouped]:
    """Messages as `RedisBroker.enqueue` would store them, grouped by queue key."""
    prepared = []
    grouped: Grouped = defaultdict(dict)
    hooks = _has_enqueue_hooks(broker)
    encode = _encode()
    for message, redis_id in zip(messages, _redis_ids(len(messages)), strict=True):
        if hooks:  # the hooks get the Message itself, as Dramatiq would give it
            message = message.copy(options={"redis_message_id": redis_id})
            broker.emit_before("enqueue", message, None)
            prepared.append(message)
            data = message.asdict()
        else:  # the same data without building a second Message
            data = {
                "queue_name": message.queue_name,
                "actor_name": message.actor_name,
                "args": message.args,
                "kwargs": message.kwargs,
                "options": {**message.options, "redis_message_id": redis_id},
                "message_id": message.message_id,
                "message_timestamp": message.message_timestamp,
            }
        queue_key = f"{broker.namespace}:{message.queue_name}".encode()
        grouped[queue_key][redis_id.encode()] = encode(data)
    return prepared, grouped


def _command(*parts: bytes) -> bytes:
    """One command in Redis's wire format (RESP): an array of bulk strings."""
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


def _transaction(grouped: Grouped) -> tuple[bytes, int]:
    """MULTI, then per queue HSET of the messages and RPUSH of their ids, then EXEC: the
    bytes to send, and how many replies come back (one per command)."""
    commands = [_command(b"MULTI")]
    for queue_key, stored in grouped.items():
        fields = [part for item in stored.items() for part in item]
        commands.append(_command(b"HSET", queue_key + b".msgs", *fields))
        commands.append(_command(b"RPUSH", queue_key, *stored))
    commands.append(_command(b"EXEC"))
    return b"".join(commands), len(commands)


def _check(executed: object) -> None:
    """EXEC's reply: a list with one reply per queued command; an error is one of them."""
    if not isinstance(executed, list):
        raise ResponseError(f"the transaction was not executed: {executed!r}")
    for reply in executed:
        if isinstance(reply, ResponseError):
            raise reply


def _after_enqueue(broker: dramatiq.Broker, messages: list[Any]) -> None:
    for message in messages:  # empty without hooks
        broker.emit_after("enqueue", message, None)


def enqueue_many(broker: dramatiq.Broker, messages: Messages) -> None:
    """Enqueue `messages` (blocking). Middleware hooks run as for `broker.enqueue`."""
    if not isinstance(broker, RedisBroker):
        for message in messages:
            broker.enqueue(message)
        return
    if not messages:
        return
    prepared, grouped = _by_queue(broker, messages)
    packed, replies = _transaction(grouped)
    pool = broker.client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command([packed])
        for _ in range(replies - 1):
            connection.read_response()  # OK, QUEUED...: an error here is raised
        _check(connection.read_response())
    except BaseException:
        connection.disconnect()  # replies may be left unread: never reuse it as it is
        raise
    finally:
        pool.release(connection)
    _after_enqueue(broker, prepared)


class AsyncRedisEnqueuer:
    """The same on the event loop, for the web process: no thread hand-off per batch."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.pool = redis.asyncio.ConnectionPool(**broker.client.connection_pool.connection_kwargs)

    async def enqueue_many(self, messages: Messages) -> None:
        if not messages:
            return
        prepared, grouped = _by_queue(self.broker, messages)
        packed, replies = _transaction(grouped)
        connection = await self.pool.get_connection()  # type: ignore[no-untyped-call]  # a decorator hides its types
        try:
            await connection.send_packed_command([packed])
            for _ in range(replies - 1):
                await connection.read_response()
            _check(await connection.read_response())
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await self.pool.release(connection)
        _after_enqueue(self.broker, prepared)

    async def close(self) -> None:
        await self.pool.disconnect()
