"""The Stripe inbox on the console's overview: what waits, what failed, how late."""

from __future__ import annotations

import asyncpg

from workers.console.status import Level, Status


async def status(pool: asyncpg.Pool) -> list[Status]:
    row = await pool.fetchrow(
        """SELECT count(*) FILTER (WHERE state IN ('received', 'processing')) AS waiting,
                  count(*) FILTER (WHERE state = 'failed') AS failed,
                  extract(epoch FROM now() - min(received_at)
                                       FILTER (WHERE state IN ('received', 'processing'))) AS lag
             FROM stripe_events WHERE state IN ('received', 'processing', 'failed')"""
    )
    assert row is not None  # an aggregate always has its row
    lag = float(row["lag"] or 0)
    level: Level = "bad" if row["failed"] else "warn" if lag > 300 else "ok"
    reason = f"{row['waiting']} waiting (oldest {lag:.0f} s), {row['failed']} failed"
    return [Status("billing follows Stripe", level, reason)]
