"""The privacy register on the console's overview: open requests against the legal clock."""

from __future__ import annotations

import asyncpg

from tasks.privacy.deadlines import requests_at_risk
from workers.console.status import Level, Status


async def status(pool: asyncpg.Pool) -> list[Status]:
    open_requests = await pool.fetchval("SELECT count(*) FROM privacy_requests WHERE state = 'open'")
    at_risk = await requests_at_risk(pool)
    overdue = sum(1 for request in at_risk if request["overdue"])
    soon = len(at_risk) - overdue
    level: Level = "bad" if overdue else "warn" if soon else "ok"
    reason = f"{open_requests} open, {soon} due within 5 days, {overdue} overdue"
    return [Status("every request about one's data is answered within a month", level, reason)]
