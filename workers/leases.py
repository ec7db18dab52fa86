"""Rows claimed with a lease, the way every domain's claims work.

A claim sets the row's `lease_until` and a fencing token (a counter bumped by each claim,
or an attempt's own id); while the lease runs no other worker takes the row, and once it
has run out the next claim, or a reconciler, may. Every write a holder makes is fenced by
its token, so a holder that stalled past its lease and lost the row writes nothing.

The SQL that says which rows are free (`claimable`, `abandoned`, `alive`) is written here
once; each domain's claim and reconciler adds its own columns and conditions around it.

Two lengths:
- `lease_for(queue)`: the queue's time limit and a margin, for a claim held for the
  work of one message and never renewed. Dramatiq stops a message at its time limit, so
  a live holder never outlives its lease.
- `RENEWED_LEASE`: for a claim kept by `heartbeat` (or renewed as its holder goes), so
  that the row of a dead holder is free again within minutes, however long the queue
  lets a message run (six hours for a backup).

Two kinds of row take only `lease_for` from here, and keep a timestamp instead of a
claim, on purpose. A `jobs` row (workers/job_rows.py) is not held by one worker: a
duplicate message may run it again while it runs, since every job is idempotent and its
only later writes (done, failed) are guarded by its status, so a fence would protect
nothing; `system.resend_lost_jobs` re-sends a row left running longer than its queue's
lease. A `schedule_runs` row (workers/scheduled_runs.py) records that a slot's run
started; a start older than the lease may start again. Neither is ever renewed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from workers.db import Connection, quote_identifier
from workers.logs import get_logger
from workers.queues import policy

log = get_logger(__name__)

MARGIN = timedelta(minutes=1)
RENEWED_LEASE = timedelta(minutes=2)


def abandoned(held: str) -> str:
    """SQL: a row in state `held` whose holder is gone: its lease ran out, or it gave the
    row up (`Held.release`). Such a row is free to claim again, or to return."""
    return f"(state = '{held}' AND (lease_until IS NULL OR lease_until < now()))"


def claimable(waiting: str, held: str) -> str:
    """SQL: a row a claim may take now: waiting in state `waiting`, or abandoned."""
    return f"(state = '{waiting}' OR {abandoned(held)})"


def alive(held: str) -> str:
    """SQL: a row in state `held` whose holder's lease still runs."""
    return f"(state = '{held}' AND lease_until >= now())"


def lease_for(queue: str) -> timedelta:
    """The lease of a claim held for one message of `queue` and never renewed."""
    return timedelta(seconds=policy(queue).time_limit_s) + MARGIN


@dataclass(frozen=True)
class Held:
    """One claimed row: its table and key, the fencing column and the claim's token."""

    table: str
    key: str
    key_value: Any
    fence: str
    token: Any
    lease: timedelta = RENEWED_LEASE

    def _where(self) -> str:
        # Table and column names are ours, from the claim's code, never from input.
        return (
            f" WHERE {quote_identifier(self.key)} = $1 AND {quote_identifier(self.fence)} = $2"
            " AND lease_until IS NOT NULL"
        )

    async def renew(self, conn: asyncpg.Pool | Connection) -> bool:
        """Extend the lease; False when the claim is no longer this holder's (taken over,
        released or finished)."""
        query = f"UPDATE {quote_identifier(self.table)} SET lease_until = now() + $3::interval"  # nosec B608
        renewed = await conn.fetchval(
            query + self._where() + " RETURNING true", self.key_value, self.token, self.lease
        )
        return bool(renewed)

    async def release(self, conn: asyncpg.Pool | Connection) -> None:
        """Give the row up now, so that the next claim need not wait for the lease."""
        query = f"UPDATE {quote_identifier(self.table)} SET lease_until = NULL"  # nosec B608
        await conn.execute(query + self._where(), self.key_value, self.token)


@dataclass
class Heartbeat:
    lost: asyncio.Event  # set once a beat found the claim gone


def heartbeat(pool: asyncpg.Pool, held: Held) -> contextlib.AbstractAsyncContextManager[Heartbeat]:
    """Keep one row's claim while the block runs, renewed every third of its lease."""
    return keep_renewing(lambda: held.renew(pool), held.lease.total_seconds() / 3, held.table)


@contextlib.asynccontextmanager
async def keep_renewing(
    renew: Callable[[], Awaitable[bool]], every: float, what: str
) -> AsyncIterator[Heartbeat]:
    """Call `renew` every `every` seconds while the block runs, in the background, so that
    a holder blocked on slow work (a long upload, a slow mail server) keeps its claim. A
    beat that fails to reach the database is logged and the next one tries again; once
    `renew` says the claim is gone, beating stops and `lost` is set (the holder's fenced
    writes will find that out too)."""
    state = Heartbeat(asyncio.Event())

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                if not await renew():
                    log.warning("lease lost", what=what)
                    state.lost.set()
                    return
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("lease not renewed", what=what, error=type(error).__name__)

    beating = asyncio.create_task(beat())
    try:
        yield state
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
