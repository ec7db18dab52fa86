"""Erasures on the console's overview: waiting, running, failing, the oldest."""

from __future__ import annotations

import asyncpg

from workers.console.status import Level, Status


async def status(pool: asyncpg.Pool) -> list[Status]:
    row = await pool.fetchrow(
        """SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
                  count(*) FILTER (WHERE state = 'running') AS running,
                  count(*) FILTER (WHERE state = 'running' AND last_error IS NOT NULL) AS failing,
                  extract(epoch FROM now() - min(requested_at)) / 3600 AS oldest_hours
             FROM erasure_requests WHERE state IN ('pending', 'running')"""
    )
    assert row is not None  # an aggregate always has its row
    level: Level = "bad" if row["failing"] else "ok"
    oldest = (
        f", oldest asked {float(row['oldest_hours']):.1f} h ago" if row["oldest_hours"] is not None else ""
    )
    reason = f"{row['pending']} in grace, {row['running']} running, {row['failing']} failing{oldest}"
    return [Status("accounts are erased on request", level, reason)]
