from __future__ import annotations

import asyncio

import pytest

from workers.batching import Batcher


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
