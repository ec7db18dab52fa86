"""The shared token bucket against real Redis: many callers, one rate."""

from __future__ import annotations

import asyncio
import secrets
import time

import redis.asyncio

from tests.conftest import REDIS_URL
from workers.rate_limit import RateLimiter


async def test_concurrent_callers_from_several_clients_share_one_rate() -> None:
    name = f"test-{secrets.token_hex(4)}"
    clients = [redis.asyncio.Redis.from_url(REDIS_URL) for _ in range(3)]  # three "processes"
    limiters = [RateLimiter(client, name, rate=100, burst=10) for client in clients]
    granted: list[float] = []

    async def caller(limiter: RateLimiter) -> None:
        for _ in range(20):
            await limiter.take()
            granted.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(caller(limiters[i % 3]) for i in range(3)))
    elapsed = time.monotonic() - started
    for client in clients:
        await client.aclose()
    # 60 tokens: 10 at once from the burst, then 50 at 100 per second: at least 0.5 s.
    # Three buckets of their own would have granted them in 0.1 s.
    assert len(granted) == 60
    assert elapsed >= 0.45


async def test_an_idle_bucket_grants_its_burst_at_once() -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    limiter = RateLimiter(client, f"test-{secrets.token_hex(4)}", rate=1, burst=5)
    started = time.monotonic()
    for _ in range(5):
        await limiter.take()
    assert time.monotonic() - started < 0.5
    await client.aclose()


async def test_several_tokens_at_once_count_as_many() -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    limiter = RateLimiter(client, f"test-{secrets.token_hex(4)}", rate=100, burst=20)
    started = time.monotonic()
    for _ in range(6):
        await limiter.take(10)
    # 60 tokens: 20 from the burst, then 40 at 100 per second: at least 0.4 s.
    assert time.monotonic() - started >= 0.35
    await client.aclose()
