"""Erasures on the console: the overview's line (waiting, running, failing, the oldest)
an erasure's report, and the privacy page's actions: ask for one, cancel one in grace."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from tasks.erasure.requests import NotCancellable, cancel_erasure, request_status
from workers.console.pages import ask_job, form_id, pool_of, render, require, see_other
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
    router.add_post("/erasure/request", ask)
    router.add_get("/erasure/{request_id:[0-9]{1,18}}", report)


async def report(request: web.Request) -> web.Response:
    """An erasure's steps, their counts and errors, and its verification."""
    request_id = int(request.match_info["request_id"])
    async with pool_of(request).acquire() as conn:
        found = await request_status(conn, request_id)
    if found is None:
        return render(
            request,
            "refused.html",
            status=404,
            reason=f"no erasure request {request_id}",
            back="/console/privacy",
        )
    return render(request, "erasure.html", erasure=found)


async def ask(request: web.Request) -> web.Response:
    """Ask for an account's erasure, as the job API's erasure.request (its notice included)."""
    require(request, "operator")
    account_id = await form_id(request, "account_id")
    refused = await ask_job(request, "erasure.request", {"account_id": account_id or 0})
    if refused is not None:
        return render(request, "refused.html", status=400, reason=refused, back="/console/privacy")
    return see_other("/console/jobs?name=erasure.request&status=")


async def cancel(request: web.Request) -> web.Response:
    """Cancel an account's erasure within its grace period (from the privacy page)."""
    operator = require(request, "operator")
    account_id = await form_id(request, "account_id")
    if account_id is None:
        return see_other("/console/privacy")
    async with pool_of(request).acquire() as conn:
        try:
            await cancel_erasure(conn, account_id, cancelled_by=f"operator:{operator.name}")
        except NotCancellable as refused:
            return render(request, "refused.html", status=409, reason=str(refused), back="/console/privacy")
    return see_other("/console/privacy")
