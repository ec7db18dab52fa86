"""System jobs: `system.ping` proves the whole path (API → broker → worker → database) works."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import dramatiq

from workers.audit_log import AuditRecord
from workers.console.login_limits import prune_failures
from workers.console.sessions import prune_sessions
from workers.db import rows_affected
from workers.domains import domain_retention
from workers.job_requests import requeue_stale_jobs, send_jobs_in_thread
from workers.jobs import Done, JobArguments, job
from workers.logs import get_logger
from workers.queues import policy
from workers.resources import Resources, current_resources

log = get_logger(__name__)


class PingArguments(JobArguments):
    pass


async def record_ping(resources: Resources, arguments: PingArguments) -> Done:
    """Record in the audit log that a ping ran, with the job's "done" mark; return when it ran."""
    ran = AuditRecord("system", "system.ping")
    return Done({"pong": True, "ran_at": datetime.now(UTC).isoformat()}, (ran,))


# Idempotent: the job row is marked done once; a repeated message finds it done and stops.
job("system.ping", scope="system", arguments=PingArguments)(record_ping)


@dramatiq.actor(actor_name="system.resend_lost_jobs", **policy("default").actor_options())
async def resend_lost_jobs() -> None:
    """Re-send job requests whose message was lost. Idempotent: finished jobs are skipped."""
    resources = current_resources()
    count = await requeue_stale_jobs(resources.pool, send_jobs_in_thread)
    if count:
        log.info("re-sent stale jobs", count=count)


# How long finished records are kept. The newest cron slot of each job is always kept:
# it is where a restarted scheduler resumes.
RUNS_RETENTION = timedelta(days=30)
JOBS_RETENTION = timedelta(days=30)


async def prune_records(pool: asyncpg.Pool, now: datetime) -> dict[str, int]:
    """Delete old schedule_runs and finished job requests, then what each domain's
    retention rules say. Idempotent: deleting twice deletes nothing more."""
    runs = await pool.execute(
        """
        DELETE FROM schedule_runs r
         WHERE r.slot < $1
           AND r.slot < (SELECT max(slot) FROM schedule_runs k WHERE k.job = r.job AND k.trigger = 'cron')
        """,
        now - RUNS_RETENTION,
    )
    jobs = await pool.execute(
        "DELETE FROM jobs WHERE status IN ('done', 'failed') AND finished_at < $1", now - JOBS_RETENTION
    )
    deleted = {
        "schedule_runs": rows_affected(runs),
        "jobs": rows_affected(jobs),
        "operator_sessions": await prune_sessions(pool, now),
        "console_login_failures": await prune_failures(pool, now),
    }
    for prune_domain in domain_retention():
        deleted.update(await prune_domain(pool, now))
    return deleted


@dramatiq.actor(actor_name="system.prune", **policy("default").actor_options())
async def prune() -> None:
    """Scheduled daily; safe to repeat."""
    deleted = await prune_records(current_resources().pool, datetime.now(UTC))
    log.info("pruned old records", **deleted)


@dramatiq.actor(actor_name="system.scheduled_ping", **policy("default").actor_options())
async def scheduled_ping(slot: str) -> None:
    """Records each scheduled run with its slot (the scheduler's proof of life, off by default).
    Idempotent per slot: the scheduler's middleware starts a slot's run once."""
    await current_resources().audit.record(AuditRecord("scheduler", "system.scheduled_ping", "slot", slot))
