"""The privacy register on the console: its overview line (open requests against the
legal clock) and its page."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from tasks.privacy.deadlines import requests_at_risk
from tasks.privacy.legal_clock import days_left
from workers.console.pages import Paging, ask_job, form_id, pool_of, render, require, see_other
from workers.console.status import Level, Status


async def status(pool: asyncpg.Pool) -> list[Status]:
    open_requests = await pool.fetchval("SELECT count(*) FROM privacy_requests WHERE state = 'open'")
    at_risk = await requests_at_risk(pool)
    overdue = sum(1 for request in at_risk if request["overdue"])
    soon = len(at_risk) - overdue
    level: Level = "bad" if overdue else "warn" if soon else "ok"
    reason = f"{open_requests} open, {soon} due within 5 days, {overdue} overdue"
    return [Status("every request about one's data is answered within a month", level, reason)]


# The privacy page: the register with its clock, and the erasures in flight.
NAV = ("Privacy", "/console/privacy")


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/privacy", privacy_page)
    router.add_post("/privacy/export", export)


async def export(request: web.Request) -> web.Response:
    """Send an account's customer their data, as the job API's privacy.export."""
    require(request, "operator")
    account_id = await form_id(request, "account_id")
    with_instances = (await request.post()).get("with_instances") == "1"
    arguments = {"account_id": account_id or 0, "with_instances": with_instances}
    refused = await ask_job(request, "privacy.export", arguments)
    if refused is not None:
        return render(request, "refused.html", status=400, reason=refused, back="/console/privacy")
    return see_other("/console/jobs?name=privacy.export&status=")


async def privacy_page(request: web.Request) -> web.Response:
    """The register (open requests, or all with ?all=1), oldest first, with the days left
    and whom each is about; the erasures waiting out their grace or running."""
    paging = Paging.of(request)
    everything = request.query.get("all") == "1"
    pool = pool_of(request)
    rows = await pool.fetch(
        """SELECT r.id, r.kind, r.account_id, r.received_at, r.deadline, r.state, r.outcome, r.closed_at,
                  a.email, a.business_name, concat_ws(' ', a.first_name, a.last_name) AS person, now() AS now
             FROM privacy_requests r LEFT JOIN accounts a ON a.id = r.account_id
            WHERE r.state = 'open' OR $1
            ORDER BY r.received_at, r.id LIMIT $2 OFFSET $3""",
        everything,
        paging.limit,
        paging.offset,
    )
    requests = [
        {**row, "days_left": days_left(row["deadline"], row["now"]) if row["state"] == "open" else None}
        for row in rows
    ]
    erasures = await pool.fetch(
        """SELECT e.id, e.account_id, e.state, e.requested_at, e.run_after, e.last_error,
                  e.state = 'pending' AND e.run_after > now() AS cancellable, a.email, a.business_name
             FROM erasure_requests e LEFT JOIN accounts a ON a.id = e.account_id
            WHERE e.state IN ('pending', 'running') ORDER BY e.requested_at, e.id LIMIT 200"""
    )
    return render(
        request,
        "privacy.html",
        **paging.shown(requests, "requests"),
        erasures=erasures,
        everything=everything,
    )
