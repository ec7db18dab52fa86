"""Erasures on the console: the overview's line (waiting, running, failing, the oldest)
and the cancel action of the privacy page."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from tasks.erasure.requests import NotCancellable, cancel_erasure
from workers.console.pages import pool_of, render, require, see_other
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


def routes(router: web.UrlDispatcher) -> None:
    router.add_post("/erasure/cancel", cancel)


async def cancel(request: web.Request) -> web.Response:
    """Cancel an account's erasure within its grace period (from the privacy page)."""
    operator = require(request, "operator")
    raw = (await request.post()).get("account_id")
    if not isinstance(raw, str) or not raw.isdigit():
        return see_other("/console/privacy")
    async with pool_of(request).acquire() as conn:
        try:
            await cancel_erasure(conn, int(raw), cancelled_by=f"operator:{operator.name}")
        except NotCancellable as refused:
            return render(request, "refused.html", status=409, reason=str(refused), back="/console/privacy")
    return see_other("/console/privacy")
