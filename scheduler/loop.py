"""Turn time into work: claim each due slot in Postgres, and only the winner enqueues.

Claim and enqueue are two steps; a claim whose enqueue was not recorded (a crash, the
broker down) is sent again by `send_unsent`, so no slot is lost and none fires twice
from two schedulers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
from croniter import croniter

from scheduler.jobs import ScheduledJob
from workers.logs import get_logger

log = get_logger(__name__)
Send = Callable[[ScheduledJob], None]  # blocking; run in a thread


def latest_slot(job: ScheduledJob, now: datetime) -> datetime:
    """The most recent slot at or before `now`, in UTC."""
    local_now = now.astimezone(ZoneInfo(job.timezone))
    iterator = croniter(job.cron, local_now + timedelta(microseconds=1))
    slot: datetime = iterator.get_prev(datetime)
    return slot.astimezone(UTC)


async def claim(conn: asyncpg.Pool | asyncpg.Connection, job: ScheduledJob, slot: datetime) -> bool:
    won = await conn.fetchval(
        "INSERT INTO schedule_runs (job, slot) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        job.name,
        slot,
    )
    return bool(won)


async def mark_sent(conn: asyncpg.Pool | asyncpg.Connection, job: ScheduledJob, slot: datetime) -> None:
    await conn.execute(
        "UPDATE schedule_runs SET enqueued_at = now() WHERE job = $1 AND slot = $2", job.name, slot
    )


async def fire_due(pool: asyncpg.Pool, jobs: list[ScheduledJob], send: Send, now: datetime) -> int:
    fired = 0
    for job in jobs:
        if not job.enabled:
            continue
        slot = latest_slot(job, now)
        if await claim(pool, job, slot):
            await asyncio.to_thread(send, job)
            await mark_sent(pool, job, slot)
            fired += 1
    return fired


async def send_unsent(
    pool: asyncpg.Pool, jobs: list[ScheduledJob], send: Send, older_than: timedelta = timedelta(seconds=30)
) -> int:
    """Send again the claimed slots whose send was never recorded."""
    by_name = {job.name: job for job in jobs}
    rows = await pool.fetch(
        """
        UPDATE schedule_runs SET claimed_at = now()
         WHERE (job, slot) IN (SELECT job, slot FROM schedule_runs
                                WHERE enqueued_at IS NULL AND claimed_at < now() - $1::interval
                                FOR UPDATE SKIP LOCKED)
        RETURNING job, slot
        """,
        older_than,
    )
    for row in rows:
        job = by_name.get(row["job"])
        if job is not None:
            await asyncio.to_thread(send, job)
            await mark_sent(pool, job, row["slot"])
    return len(rows)


async def run_forever(pool: asyncpg.Pool, jobs: list[ScheduledJob], send: Send, tick: float = 1.0) -> None:
    while True:
        try:
            await fire_due(pool, jobs, send, datetime.now(UTC))
            await send_unsent(pool, jobs, send)
        except Exception as error:
            # Postgres or the broker is away: try again next tick; nothing was marked sent.
            log.warning("scheduler tick failed", error=type(error).__name__)
        await asyncio.sleep(tick)
