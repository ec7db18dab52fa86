"""Group commit: concurrent callers' items are written in one round trip.

While one batch is being flushed, new items queue up; the next flush takes all of
them. Under load a batch holds as many items as arrived during one flush, and an
idle caller waits for nobody, unless the batcher lingers (see `Batcher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from workers.db import Connection

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Call `flush(items) -> results` (same order, same length) for batches of items.

    Parameters:
      flush: writes a batch and returns one result per item.
      max_batch: the most items one flush receives.
      linger: seconds a flush waits for a full batch when fewer items are pending (0:
        it starts at once). For a flush that costs about the same for one item as for
        many, such as a scan of every table: waiting lets more callers share it.
    """

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 256,
        linger: float = 0.0,
    ):
        self._flush = flush
        self._max_batch = max_batch
        self._linger = linger
        self._full = asyncio.Event()
        # Each item with the future its caller waits on (None: posted, nobody waits).
        self._pending: list[tuple[T, asyncio.Future[R] | None]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._add(item, future)
        return await future

    def post(self, item: T) -> None:
        """Submit without waiting: nobody learns the outcome, so `flush` must deal with its
        own failures."""
        self._add(item, None)

    async def idle(self) -> None:
        """Wait until everything submitted or posted so far has been flushed."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)

    def _add(self, item: T, future: asyncio.Future[R] | None) -> None:
        self._pending.append((item, future))
        if len(self._pending) >= self._max_batch:
            self._full.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            await self._wait_for_more()
            await self._run(self._next_batch(), self._flush)

    async def _wait_for_more(self) -> None:
        """Up to `linger` seconds, unless a full batch is already waiting."""
        if self._linger and len(self._pending) < self._max_batch:
            self._full.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._linger)

    def _next_batch(self) -> list[tuple[T, asyncio.Future[R] | None]]:
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        return batch

    async def _run(
        self,
        batch: list[tuple[T, asyncio.Future[R] | None]],
        flush: Callable[[list[T]], Awaitable[Sequence[R]]],
    ) -> bool:
        """Flush the batch and hand each waiter its result; False when the flush failed."""
        try:
            results = await flush([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError("flush returned the wrong number of results")
        except BaseException as error:
            _fail(batch, error)
            if not isinstance(error, Exception):
                raise
            return False
        for (_, future), result in zip(batch, results, strict=True):
            if future is not None and not future.done():
                future.set_result(result)
        return True


def _fail(batch: list[tuple[T, asyncio.Future[R] | None]], error: BaseException) -> None:
    """Every waiter of the batch learns of the failure."""
    for _, future in batch:
        if future is not None and not future.done():
            future.set_exception(error)


class PooledBatcher(Batcher[T, R]):
    """A Batcher whose flushes run on a connection of an asyncpg pool.

    The connection is held while batches follow one another and goes back to the pool
    once none is pending: under load a job's claim, audit record and "done" mark then
    cost no pool acquire and release each (a tenth of a worker's interpreter time went
    to those). After a failed flush the connection goes back (the pool replaces a broken
    one) and the next batch takes another; when none can be had, the batch's callers get
    the error.

    Parameters:
      pool: where the connection comes from.
      flush: `flush(connection, items) -> results`, as `Batcher`'s with the connection.
      custom_plans: have Postgres plan each flush's statement for its own parameters
        while the batcher holds the connection (reset before it goes back). Otherwise,
        after five runs, Postgres may keep one plan made for any parameters and costed
        on the table as it was then, until the next ANALYZE: made while `jobs` was nearly
        empty, the "done" marks' plan read every unfinished job for each batch once a
        backlog had grown.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        flush: Callable[[Connection, list[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 256,
        custom_plans: bool = False,
    ):
        super().__init__(self._unreachable, max_batch=max_batch)
        self._pool = pool
        self._flush_on = flush
        self._custom_plans = custom_plans

    async def _drain(self) -> None:
        while self._pending:
            try:
                connection = await self._pool.acquire()
            except Exception as error:  # the database is away
                _fail(self._next_batch(), error)
                continue
            try:
                if self._custom_plans:
                    await connection.execute("SET plan_cache_mode = force_custom_plan")
                flush = functools.partial(self._flush_on, connection)
                while self._pending:
                    if not await self._run(self._next_batch(), flush):
                        break  # the connection may be what failed: the next batch takes another
            except Exception as error:  # the SET failed: so would the batch
                _fail(self._next_batch(), error)
            finally:
                await self._give_back(connection)

    async def _give_back(self, connection: PoolConnectionProxy) -> None:
        if self._custom_plans:
            try:
                await connection.execute("RESET plan_cache_mode")
            except Exception:  # broken (and maybe released already), or stuck: never reused as it is
                with contextlib.suppress(Exception):
                    connection.terminate()
        await self._pool.release(connection)  # nothing to do if it broke and was released

    async def _unreachable(self, items: list[T]) -> Sequence[R]:
        raise AssertionError("a PooledBatcher flushes through its _drain")
