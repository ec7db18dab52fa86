"""Backup actors and jobs: thin wrappers over tasks.backups.run and its neighbours."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import dramatiq

from tasks.backups.catalog import ErasureRunning, NoSlot
from tasks.backups.expiry import expire_backups
from tasks.backups.freshness import check_freshness
from tasks.backups.nightly_restore import next_to_restore, restore_and_compare
from tasks.backups.restore import verify_backup
from tasks.backups.run import back_up
from tasks.backups.sweeper import sweep
from workers.enqueue import enqueue_many
from workers.jobs import JobArguments, RowId, job, row_must_exist
from workers.logs import get_logger
from workers.queues import policy
from workers.resources import Resources, current_resources

log = get_logger(__name__)
PARIS = ZoneInfo("Europe/Paris")


def local_day(moment: datetime) -> date:
    """The day a backup is for: the Paris calendar day, as customers count days."""
    return moment.astimezone(PARIS).date()


class InstanceArguments(JobArguments):
    instance_id: RowId


instance_exists = row_must_exist("instances", "instance_id")


async def run_now_job(resources: Resources, arguments: InstanceArguments) -> dict[str, Any]:
    """Back the instance up for today (Paris), and read it back. Idempotent: today's backup
    is kept. On demand, so not held to BACKUP_CONCURRENCY (which paces the nightly run)."""
    now = await resources.pool.fetchval("SELECT now()")
    return await back_up(
        resources.pool, resources.settings, resources.s3, arguments.instance_id, local_day(now)
    )


job(
    "backups.run_now", scope="backups", arguments=InstanceArguments, queue="backups", precheck=instance_exists
)(run_now_job)


@dramatiq.actor(actor_name="backups.run", queue_name="backups", **policy("backups").actor_options())
async def run(instance_id: int, day: str) -> None:
    """One instance's backup of one day, read back. Idempotent: see tasks.backups.run.
    When BACKUP_CONCURRENCY backups already run, the message comes back in a minute or so
    (a delay, not a retry: waiting for a slot is not a failure)."""
    resources = current_resources()
    try:
        outcome = await back_up(
            resources.pool,
            resources.settings,
            resources.s3,
            instance_id,
            date.fromisoformat(day),
            slots=resources.settings.backup_concurrency,
        )
    except ErasureRunning:
        log.info("backup skipped: the account is being erased", instance_id=instance_id, day=day)
        return
    except NoSlot:
        delay = 30_000 + secrets.randbelow(60_000)  # spread: waiting runs do not come back together
        await asyncio.to_thread(run.send_with_options, args=(instance_id, day), delay=delay)
        log.info("backup waits for a slot", instance_id=instance_id, day=day, delay_ms=delay)
        return
    log.info(
        "backup run", instance_id=instance_id, day=day, state=outcome["state"], created=outcome["created"]
    )


async def paid_instances(pool: asyncpg.Pool) -> list[int]:
    rows = await pool.fetch(
        "SELECT i.id FROM instances i JOIN paid_accounts p ON p.account_id = i.account_id ORDER BY i.id"
    )
    return [row["id"] for row in rows]


@dramatiq.actor(actor_name="backups.run_nightly", **policy("default").actor_options())
async def run_nightly(slot: str) -> None:
    """Fan out one `backups.run` per instance of a paid account, for the slot's Paris day.
    Safe to repeat: each (instance, day) is backed up once."""
    day = local_day(datetime.fromisoformat(slot)).isoformat()
    instance_ids = await paid_instances(current_resources().pool)
    messages = [run.message(instance_id, day) for instance_id in instance_ids]
    if messages:
        await asyncio.to_thread(enqueue_many, run.broker, messages)
    log.info("nightly backups sent", count=len(messages), day=day)


@dramatiq.actor(actor_name="backups.expire", queue_name="backups", **policy("backups").actor_options())
async def expire(slot: str) -> None:
    """Delete the backups older than the retention. Idempotent: see tasks.backups.expiry."""
    resources = current_resources()
    count = await expire_backups(
        resources.pool, resources.settings, resources.s3, local_day(datetime.fromisoformat(slot))
    )
    log.info("backups expired", count=count)


@dramatiq.actor(actor_name="backups.restore_test", queue_name="backups", **policy("backups").actor_options())
async def restore_test(slot: str) -> None:
    """Restore a recent backup into a scratch database and compare it with its source.
    Safe to repeat: a restore-tested backup is not picked again."""
    resources = current_resources()
    backup_id = await next_to_restore(resources.pool)
    if backup_id is None:
        log.info("restore test: no recent backup to restore")
        return
    outcome = await restore_and_compare(resources.pool, resources.settings, resources.s3, backup_id)
    log.info("restore test passed", backup_id=outcome["backup_id"], tables=outcome["tables"])


@dramatiq.actor(actor_name="backups.freshness", **policy("default").actor_options())
async def freshness() -> None:
    """Alert on paid instances without a verified backup in 26 hours. Repeating it repeats
    the alert, which is the point while the problem lasts."""
    resources = current_resources()
    await check_freshness(resources.pool, resources.settings)


@dramatiq.actor(actor_name="backups.sweep", queue_name="backups", **policy("backups").actor_options())
async def sweep_bucket() -> None:
    """Delete objects no catalog row knows and abort stale uploads. Idempotent."""
    resources = current_resources()
    swept = await sweep(resources.pool, resources.settings, resources.s3)
    log.info("backup bucket swept", **swept)


@dramatiq.actor(actor_name="backups.verify", queue_name="backups", **policy("backups").actor_options())
async def verify(backup_id: str) -> None:
    """Read one backup back (download, sha256, decrypt, `pg_restore --list`), as the
    console's "verify" asks. Safe to repeat: a verified backup stays verified."""
    resources = current_resources()
    outcome = await verify_backup(resources.pool, resources.settings, resources.s3, uuid.UUID(backup_id))
    log.info("backup verified", backup_id=backup_id, entries=outcome["entries"])
