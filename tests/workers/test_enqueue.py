"""Batched enqueueing stores messages exactly as Dramatiq's own consumers expect them."""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
import pytest
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


async def test_stored_messages_are_what_dramatiq_itself_would_store(redis_client: redis.Redis) -> None:
    broker, _, _ = _broker_with_recorder()
    messages = _messages(3, "record", "default") + _messages(2, "record_mail", "mail")
    enqueue_many(broker, messages[:2])
    enqueuer = AsyncRedisEnqueuer(broker)
    await enqueuer.enqueue_many(messages[2:])
    await enqueuer.close()
    stored = {
        **redis_client.hgetall("enqueue-test:default.msgs"),
        **redis_client.hgetall("enqueue-test:mail.msgs"),
    }
    queued = redis_client.lrange("enqueue-test:default", 0, -1) + redis_client.lrange(
        "enqueue-test:mail", 0, -1
    )
    assert sorted(queued) == sorted(stored)
    by_id = {message.message_id: message for message in messages}
    for redis_id, data in stored.items():
        decoded = dramatiq.Message.decode(data)
        as_dramatiq = by_id[decoded.message_id].copy(options={"redis_message_id": redis_id.decode()})
        assert data == as_dramatiq.encode()  # byte for byte, with Dramatiq's own encoder
    assert len({m.options["redis_message_id"] for m in map(dramatiq.Message.decode, stored.values())}) == 5


async def test_a_refused_transaction_raises_and_the_next_batch_goes_through(
    redis_client: redis.Redis,
) -> None:
    broker, _, _ = _broker_with_recorder()
    redis_client.set("enqueue-test:default", "not a list")  # RPUSH fails inside EXEC
    enqueuer = AsyncRedisEnqueuer(broker)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        enqueue_many(broker, _messages(2, "record", "default"))
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await enqueuer.enqueue_many(_messages(2, "record", "default"))
    redis_client.delete("enqueue-test:default", "enqueue-test:default.msgs")
    enqueue_many(broker, _messages(2, "record", "default"))
    await enqueuer.enqueue_many(_messages(3, "record", "default"))
    await enqueuer.close()
    assert redis_client.llen("enqueue-test:default") == 5
    assert redis_client.hlen("enqueue-test:default.msgs") == 5


def test_the_layout_is_the_one_dramatiq_itself_writes(redis_client: redis.Redis) -> None:
    """Dramatiq's own enqueue and ours, side by side in two namespaces: the same keys, of
    the same types, holding the same messages. A Dramatiq release that moves anything
    fails here before it loses a job."""
    ours = RedisBroker(url=REDIS_URL, namespace="layout-ours")
    theirs = RedisBroker(url=REDIS_URL, namespace="layout-theirs")
    message = _messages(1, "record", "default")[0]
    enqueue_many(ours, [message])
    theirs.enqueue(message.copy())

    def layout(namespace: str) -> dict[str, Any]:
        keys = {
            key.decode().removeprefix(namespace): redis_client.type(key)
            for key in redis_client.scan_iter(f"{namespace}*")
        }
        # Every call of Dramatiq's script beats its broker's heart; that is not the message.
        keys.pop(":__heartbeats__", None)
        return keys

    assert layout("layout-ours") == layout("layout-theirs") == {":default.msgs": b"hash", ":default": b"list"}
    [(our_id, our_data)] = redis_client.hgetall("layout-ours:default.msgs").items()
    [(their_id, their_data)] = redis_client.hgetall("layout-theirs:default.msgs").items()
    assert redis_client.lrange("layout-ours:default", 0, -1) == [our_id]
    assert redis_client.lrange("layout-theirs:default", 0, -1) == [their_id]
    ours_decoded, theirs_decoded = dramatiq.Message.decode(our_data), dramatiq.Message.decode(their_data)
    assert ours_decoded.options == {"redis_message_id": our_id.decode()}
    assert theirs_decoded.options == {"redis_message_id": their_id.decode()}
    assert ours_decoded.asdict() | {"options": {}} == theirs_decoded.asdict() | {"options": {}}
