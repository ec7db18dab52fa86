"""The scheduler's claim: whatever the number of schedulers, a slot fires once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from scheduler.jobs import ScheduledJob
from scheduler.loop import fire_due, latest_slot, send_unsent


def test_latest_slot_is_in_utc_and_in_the_jobs_time_zone() -> None:
    nightly = ScheduledJob("nightly", "0 2 * * *", actor="x", timezone="Europe/Paris")
    now = datetime(2026, 7, 1, 5, 0, tzinfo=UTC)
    assert latest_slot(nightly, now) == datetime(2026, 7, 1, 0, 0, tzinfo=UTC)  # 02:00 CEST


async def test_concurrent_schedulers_fire_a_slot_once(pool: asyncpg.Pool) -> None:
    job = ScheduledJob(f"once-{id(pool)}", "* * * * *", actor="system.reconcile_jobs")
    sent: list[str] = []
    now = datetime.now(UTC)
    schedulers = (fire_due(pool, [job], lambda j: sent.append(j.name), now) for _ in range(5))
    fired = await asyncio.gather(*schedulers)
    assert sum(fired) == 1
    assert sent == [job.name]


async def test_a_claim_whose_send_was_lost_is_sent_by_the_sweeper(pool: asyncpg.Pool) -> None:
    job = ScheduledJob("lost-send", "* * * * *", actor="system.reconcile_jobs")
    await pool.execute(
        "INSERT INTO schedule_runs (job, slot, claimed_at) VALUES ($1, now(), now() - interval '5 minutes')",
        job.name,
    )
    sent: list[str] = []
    assert await send_unsent(pool, [job], lambda j: sent.append(j.name)) == 1
    assert sent == [job.name]
    assert await pool.fetchval("SELECT enqueued_at IS NOT NULL FROM schedule_runs WHERE job = $1", job.name)
