"""The broker holds no personal data (workers/safe_retries.py): jobs that fail with a
driver's or a library's message naming an address leave that address nowhere in Redis,
neither in the retried message nor in the dead letter, through a real Dramatiq worker."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg
import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import default_middleware

from tests.breach_setup import sink
from tests.conftest import REDIS_URL
from workers.broker import build_broker
from workers.safe_retries import RetriesWithoutData, without_data
from workers.settings import load_settings

QUEUE = "no-data-test"
ADDRESS = f"jeanne.{secrets.token_hex(3)}@exemple.fr"


def test_the_product_broker_stores_no_raw_traceback() -> None:
    broker = build_broker(load_settings())
    kinds = [type(item).__name__ for item in broker.middleware]
    assert "RetriesWithoutData" in kinds and "Retries" not in kinds


@pytest.fixture
def worker_broker(redis_client: redis.Redis) -> Iterator[RedisBroker]:
    broker = RedisBroker(
        url=REDIS_URL, namespace="no-data-test", middleware=without_data([m() for m in default_middleware])
    )
    assert any(isinstance(item, RetriesWithoutData) for item in broker.middleware)
    broker.declare_queue(QUEUE)
    yield broker
    broker.close()


def _stored_bytes(client: redis.Redis) -> bytes:
    """Every key and value in the broker's database, read by type (DUMP may compress)."""
    found: list[Any] = []
    for key in client.scan_iter("*"):
        kind = client.type(key)
        found.append(key)
        if kind == b"hash":
            found += [part for pair in client.hgetall(key).items() for part in pair]
        elif kind == b"zset":
            found += client.zrange(key, 0, -1)
        elif kind == b"list":
            found += client.lrange(key, 0, -1)
        elif kind == b"set":
            found += client.smembers(key)
        elif kind == b"string":
            found.append(client.get(key) or b"")
    return b"\n".join(found)


def _dead_letters(client: redis.Redis) -> int:
    return int(client.zcard(f"no-data-test:{QUEUE}.XQ"))


async def _duplicate_account(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(2):  # the second insert fails: "Key (email)=(…) already exists"
            await conn.execute("INSERT INTO accounts (email, password_hash) VALUES ($1, 'x')", ADDRESS)
    finally:
        await conn.close()


async def _refused(smtp_url: str) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@bindery.localhost", ADDRESS, "x"
    message.set_content("x")
    port = int(smtp_url.rsplit(":", 1)[1])
    await aiosmtplib.send(message, hostname="127.0.0.1", port=port)  # raises, naming the address


def test_failures_naming_an_address_leave_it_nowhere_in_redis(
    worker_broker: RedisBroker, redis_client: redis.Redis, database_url: str, tmp_path: Path
) -> None:
    failures: list[str] = []
    with sink(tmp_path, "--reject", "@") as (smtp_url, _):

        @dramatiq.actor(broker=worker_broker, queue_name=QUEUE, max_retries=1, min_backoff=10, max_backoff=20)
        def fails_with_data(kind: str) -> None:
            try:
                asyncio.run(_duplicate_account(database_url) if kind == "db" else _refused(smtp_url))
            except Exception as error:
                failures.append(type(error).__name__)
                raise

        fails_with_data.send("db")
        fails_with_data.send("smtp")
        worker = dramatiq.Worker(worker_broker, worker_threads=2, worker_timeout=100)
        worker.start()
        try:
            deadline = time.monotonic() + 30
            while _dead_letters(redis_client) < 2:
                assert time.monotonic() < deadline, "both jobs dead-lettered after their retry"
                time.sleep(0.05)
        finally:
            worker.stop()
    assert sorted(failures) == sorted(["UniqueViolationError", "SMTPRecipientsRefused"] * 2)
    stored = _stored_bytes(redis_client)
    assert b"UniqueViolationError" in stored and b"SMTPRecipientsRefused" in stored, "the failures are kept"
    assert ADDRESS.encode() not in stored
    assert ADDRESS.split("@")[0].encode() not in stored


def test_bindery_s_own_messages_are_kept() -> None:
    from workers.errors import JobError
    from workers.logs import safe_traceback

    try:
        try:
            raise ValueError(f"quoting {ADDRESS}")
        except ValueError as cause:
            raise JobError("instance 7: pg_dump exited with status 1") from cause
    except JobError as error:
        text = safe_traceback(error)
    assert "instance 7: pg_dump exited with status 1" in text and "ValueError" in text
    assert ADDRESS not in text
