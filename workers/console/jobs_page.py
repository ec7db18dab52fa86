"""The console's jobs page: the job API's requests, recent or failed, by name, with retry.

Jobs are the plumbing's, so their page is the frame's own."""

from __future__ import annotations

import re
from uuid import UUID

from aiohttp import web

from workers.console.pages import Paging, audit, pool_of, render, require, see_other
from workers.job_requests import send_jobs_in_thread
from workers.jobs import JOB_NAME

NAV = ("Jobs", "/console/jobs")
STATUSES = ("queued", "running", "done", "failed")


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/jobs", jobs_page)
    router.add_post("/jobs/retry", retry)


async def jobs_page(request: web.Request) -> web.Response:
    """The newest jobs first, of one name and status if asked (failed by default)."""
    paging = Paging.of(request)
    name = request.query.get("name", "")
    name = name if re.fullmatch(JOB_NAME, name) else ""
    status = request.query.get("status", "failed")
    status = status if status in STATUSES else ""
    rows = await pool_of(request).fetch(
        """SELECT id, name, status, attempts, error, created_at, finished_at FROM jobs
            WHERE ($1 = '' OR name = $1) AND ($2 = '' OR status = $2)
            ORDER BY created_at DESC, id LIMIT $3 OFFSET $4""",
        name,
        status,
        paging.limit,
        paging.offset,
    )
    failed_by_name = await pool_of(request).fetch(
        """SELECT name, count(*) AS failed FROM jobs
            WHERE status = 'failed' AND finished_at > now() - interval '24 hours'
            GROUP BY name ORDER BY count(*) DESC, name"""
    )
    return render(
        request,
        "jobs.html",
        **paging.shown(rows, "jobs"),
        name=name,
        chosen=status,
        statuses=STATUSES,
        failed_by_name=failed_by_name,
    )


async def retry(request: web.Request) -> web.Response:
    """Run a failed job again, with fresh attempts."""
    require(request, "operator")
    raw = (await request.post()).get("job_id")
    try:
        job_id = UUID(str(raw))
    except ValueError:
        return see_other("/console/jobs")
    name = await pool_of(request).fetchval(
        """UPDATE jobs SET status = 'queued', attempts = 0, error = NULL, finished_at = NULL,
                          updated_at = now()
            WHERE id = $1 AND status = 'failed' RETURNING name""",
        job_id,
    )
    if name is not None:
        await send_jobs_in_thread([(name, job_id)])
        await audit(request, "console.job_retry", "job", str(job_id))
    return see_other("/console/jobs")
