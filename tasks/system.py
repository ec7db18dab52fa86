"""System jobs: `system.ping` proves the whole path (API → broker → worker → database) works."""

from __future__ import annotations

from typing import Any

import dramatiq

from workers.job_requests import requeue_stale_jobs, send_jobs_in_thread
from workers.jobs import JobArguments, job
from workers.logs import get_logger
from workers.queues import policy
from workers.resources import Resources, current_resources

log = get_logger(__name__)


class PingArguments(JobArguments):
    pass


async def record_ping(resources: Resources, arguments: PingArguments) -> dict[str, Any]:
    """Record in the audit log that a ping ran; return when it ran."""
    ran_at = await resources.pool.fetchval(
        "INSERT INTO audit_log (actor, action) VALUES ('system', 'system.ping') RETURNING at"
    )
    return {"pong": True, "ran_at": ran_at.isoformat()}


# Idempotent: the job row is marked done once; a repeated message finds it done and stops.
job("system.ping", scope="system", arguments=PingArguments)(record_ping)


@dramatiq.actor(actor_name="system.reconcile_jobs", **policy("default").actor_options())
async def reconcile_jobs() -> None:
    """Re-send job requests whose message was lost. Idempotent: finished jobs are skipped."""
    resources = current_resources()
    count = await requeue_stale_jobs(resources.pool, send_jobs_in_thread)
    if count:
        log.info("re-sent stale jobs", count=count)
