from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from workers.batching import Batcher, PooledBatcher
from workers.db import Connection, create_pool


async def test_concurrent_items_share_flushes_and_get_their_own_results() -> None:
    sizes: list[int] = []

    async def flush(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0.01)
        return [item * 2 for item in items]

    batcher: Batcher[int, int] = Batcher(flush, max_batch=50)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(200)))
    assert results == [i * 2 for i in range(200)]
    assert sum(sizes) == 200
    assert len(sizes) < 200 and max(sizes) <= 50


async def test_a_failed_flush_fails_its_callers_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def flush(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database away")
        return items

    batcher: Batcher[int, int] = Batcher(flush)
    with pytest.raises(ConnectionError):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2


async def test_posted_items_are_flushed_together_and_idle_waits_for_them() -> None:
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[None]:
        batches.append(items)
        return [None] * len(items)

    batcher: Batcher[int, None] = Batcher(flush, max_batch=100, linger=60.0)
    for item in range(5):
        batcher.post(item)  # returns at once: nobody waits for a posted item
    assert batches == []
    for item in range(5, 100):
        batcher.post(item)  # the hundredth fills the batch: no need to wait for the linger
    await asyncio.wait_for(batcher.idle(), 5)
    assert batches == [list(range(100))]


async def test_a_posted_item_whose_flush_failed_leaves_the_batcher_working() -> None:
    seen: list[int] = []

    async def flush(items: list[int]) -> list[None]:
        if items == [1]:
            raise ConnectionError("broker away")
        seen.extend(items)
        return [None] * len(items)

    batcher: Batcher[int, None] = Batcher(flush)
    batcher.post(1)
    await asyncio.wait_for(batcher.idle(), 5)  # the failure reaches nobody and stops nothing
    batcher.post(2)
    await asyncio.wait_for(batcher.idle(), 5)
    assert seen == [2]


async def test_a_lingering_batcher_waits_for_a_full_batch_but_no_longer_than_its_linger() -> None:
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        batches.append(items)
        return items

    # Items that come one by one share a flush, which starts as soon as the batch is full.
    batcher: Batcher[int, int] = Batcher(flush, max_batch=3, linger=60.0)
    first = asyncio.ensure_future(batcher.submit(1))
    for _ in range(5):
        await asyncio.sleep(0)  # the drainer runs, and waits
    assert batches == [] and not first.done()
    rest = asyncio.gather(batcher.submit(2), batcher.submit(3))
    await asyncio.wait_for(asyncio.gather(first, rest), 5)
    assert first.result() == 1 and list(rest.result()) == [2, 3]
    assert batches == [[1, 2, 3]]

    # A lone item waits for the linger, then goes alone.
    lone: Batcher[int, int] = Batcher(flush, max_batch=3, linger=0.05)
    started = time.monotonic()
    assert await lone.submit(4) == 4
    assert time.monotonic() - started >= 0.05 and batches[-1] == [4]


async def test_pooled_batches_that_follow_each_other_share_one_connection_then_give_it_back(
    pool: asyncpg.Pool,
) -> None:
    backends: list[int] = []

    async def flush(conn: Connection, items: list[int]) -> list[int]:
        backends.append(await conn.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.005)"))
        return items

    batcher: PooledBatcher[int, int] = PooledBatcher(pool, flush, max_batch=10)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(100))) == list(range(100))
    assert len(backends) >= 10 and len(set(backends)) == 1
    assert pool.get_idle_size() == pool.get_size()  # returned once nothing was pending


async def test_a_pooled_batch_on_a_connection_that_broke_fails_and_the_next_takes_another(
    pool: asyncpg.Pool,
) -> None:
    backends: list[int] = []

    async def flush(conn: Connection, items: list[int]) -> list[int]:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        backends.append(pid)
        if len(backends) == 1:  # the server ends this connection under the first batch
            async with pool.acquire() as other:
                await other.execute("SELECT pg_terminate_backend($1)", pid)
            await conn.fetchval("SELECT 1")
        return items

    batcher: PooledBatcher[int, int] = PooledBatcher(pool, flush, max_batch=1)
    first, second = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert isinstance(first, Exception)  # which one depends on when asyncpg sees the socket close
    assert second == 2
    assert len(backends) == 2 and backends[0] != backends[1]


async def test_pooled_batches_fail_their_callers_when_no_connection_can_be_had() -> None:
    unreachable = await asyncpg.create_pool("postgresql://postgres@127.0.0.1:1/none", min_size=0, timeout=2)
    assert unreachable is not None

    async def flush(conn: Connection, items: list[int]) -> list[int]:
        return items

    batcher: PooledBatcher[int, int] = PooledBatcher(unreachable, flush)
    try:
        with pytest.raises(OSError):
            await asyncio.wait_for(batcher.submit(1), timeout=10)
    finally:
        await unreachable.close()


async def test_custom_plans_hold_while_the_batcher_has_the_connection_and_not_after(
    database_url: str,
) -> None:
    pool = await create_pool(database_url, max_size=1)  # the batcher's connection is the next caller's
    try:

        async def flush(conn: Connection, items: list[int]) -> list[str]:
            return [await conn.fetchval("SHOW plan_cache_mode")] * len(items)

        batcher: PooledBatcher[int, str] = PooledBatcher(pool, flush, custom_plans=True)
        assert set(await asyncio.gather(*(batcher.submit(i) for i in range(5)))) == {"force_custom_plan"}
        assert await pool.fetchval("SHOW plan_cache_mode") == "auto"

        async def broken(conn: Connection, items: list[int]) -> list[str]:
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            return ["unreachable"] * len(items)

        failing: PooledBatcher[int, str] = PooledBatcher(pool, broken, custom_plans=True)
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await failing.submit(1)
        assert await pool.fetchval("SHOW plan_cache_mode") == "auto"  # a new connection, as it was
    finally:
        await pool.close()
