"""One line of the console's overview: where a promise stands, and why.

Each domain with something to say has a `console` module whose `status(pool)` returns
its lines (collected by workers.domains.domain_console); the plumbing adds the queues'."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import asyncpg

Level = Literal["ok", "warn", "bad"]


@dataclass(frozen=True)
class Status:
    promise: str  # what is promised, in a few words
    level: Level
    reason: str  # why this level: counts and ages, never a customer's data


def worst(*levels: Level) -> Level:
    return "bad" if "bad" in levels else "warn" if "warn" in levels else "ok"


async def queues_status(pool: asyncpg.Pool, depths: dict[str, int] | None) -> list[Status]:
    """The job API's requests, and the broker's queues (`depths`: None when it did not answer)."""
    row = await pool.fetchrow(
        """SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
                  count(*) FILTER (WHERE status = 'running') AS running,
                  count(*) FILTER (WHERE status = 'failed' AND finished_at > now() - interval '24 hours')
                      AS failed
             FROM jobs WHERE status IN ('queued', 'running', 'failed')"""
    )
    assert row is not None  # an aggregate always has its row
    level: Level = "bad" if row["failed"] else "ok"
    reason = f"{row['queued']} queued, {row['running']} running, {row['failed']} failed in the last 24 h"
    if depths is None:
        queues = Status("the broker carries the work", "bad", "the broker did not answer")
    else:
        waiting = ", ".join(f"{queue} {count}" for queue, count in depths.items())
        queues = Status("the broker carries the work", "ok", f"messages waiting: {waiting}")
    return [Status("jobs asked for through the API are done", level, reason), queues]
