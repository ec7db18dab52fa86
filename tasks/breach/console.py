"""Breach campaigns on the console's overview: those under way, and how far."""

from __future__ import annotations

import asyncpg

from workers.console.status import Level, Status


async def status(pool: asyncpg.Pool) -> list[Status]:
    rows = await pool.fetch(
        """SELECT c.id, c.state, c.sent_count, c.failed_count,
                  (SELECT count(*) FROM breach_recipients r WHERE r.campaign_id = c.id) AS recipients
             FROM breach_campaigns c WHERE c.state IN ('sending', 'paused') ORDER BY c.id"""
    )
    if not rows:
        return [
            Status("customers are emailed if their data may have been stolen", "ok", "no campaign under way")
        ]
    level: Level = "warn" if any(row["state"] == "paused" for row in rows) else "ok"
    reason = "; ".join(
        f"campaign {row['id']} {row['state']}: {row['sent_count']} of {row['recipients']} sent,"
        f" {row['failed_count']} failed"
        for row in rows
    )
    return [Status("customers are emailed if their data may have been stolen", level, reason)]
