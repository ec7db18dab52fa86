"""`bindery scheduler list` and `run-now`: what an operator sees and does."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from scheduler.jobs import ScheduledJob
from scheduler.loop import Fire, Send, claim, mark_sent
from scheduler.slots import next_slot


async def job_table(
    conn: asyncpg.Connection | asyncpg.Pool, jobs: list[ScheduledJob], now: datetime
) -> list[dict[str, Any]]:
    """One row per job: next run (UTC and local), last run, and its lag."""
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (job) job, slot, started_at, trigger
          FROM schedule_runs ORDER BY job, slot DESC
        """
    )
    last = {row["job"]: row for row in rows}
    table = []
    for job in jobs:
        upcoming = next_slot(job.cron, job.zone, now) if job.enabled else None
        run = last.get(job.name)
        lag = (run["started_at"] - run["slot"]).total_seconds() if run and run["started_at"] else None
        table.append(
            {
                "job": job.name,
                "enabled": job.enabled,
                "cron": job.cron,
                "timezone": job.timezone,
                "actor": job.actor,
                "next_run_utc": upcoming.isoformat() if upcoming else None,
                "next_run_local": upcoming.astimezone(job.zone).isoformat() if upcoming else None,
                "last_slot_utc": run["slot"].isoformat() if run else None,
                "last_trigger": run["trigger"] if run else None,
                "last_lag_seconds": round(lag, 3) if lag is not None else None,
            }
        )
    return table


async def run_now(pool: asyncpg.Pool, job: ScheduledJob, send: Send, now: datetime) -> datetime:
    """Enqueue the job once, recorded in schedule_runs like any run (trigger 'manual')."""
    fire = Fire(job, now)
    won = await claim(pool, [fire], trigger="manual")
    if not won:  # the same microsecond twice: practically impossible, but never silent
        raise RuntimeError("a run of this job with the same timestamp already exists")
    await send(won)
    await mark_sent(pool, won)
    return now
