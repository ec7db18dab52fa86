"""Backups on the console's overview: last night's, and paid instances without one."""

from __future__ import annotations

import asyncpg

from tasks.backups.freshness import stale_instances
from workers.console.status import Level, Status


async def status(pool: asyncpg.Pool) -> list[Status]:
    night = await pool.fetchrow(
        """SELECT max(day) AS day,
                  count(*) FILTER (WHERE state = 'verified') AS verified,
                  count(*) FILTER (WHERE state = 'complete') AS complete,
                  count(*) FILTER (WHERE state = 'running') AS running,
                  count(*) FILTER (WHERE state = 'failed') AS failed
             FROM backups WHERE day = (SELECT max(day) FROM backups)"""
    )
    assert night is not None  # an aggregate always has its row
    stale = await stale_instances(pool)
    restore = await pool.fetchval("SELECT max(restore_tested_at) FROM backups")
    level: Level = (
        "bad" if stale or night["failed"] else "warn" if night["running"] or night["complete"] else "ok"
    )
    if night["day"] is None:
        reason = "no backup yet"
    else:
        reason = (
            f"{night['day']}: {night['verified']} verified, {night['complete']} complete, "
            f"{night['running']} running, {night['failed']} failed"
        )
    reason += f"; {len(stale)} paid instance(s) without a verified backup in 26 h"
    restored = f"last restore test {restore:%Y-%m-%d %H:%M} UTC" if restore else "no restore test yet"
    return [
        Status("paid instances are backed up daily, 30 days kept", level, reason),
        Status("backups restore", "ok" if restore else "warn", restored),
    ]
