"""What the `bindery backup …` commands do, as plain functions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
from botocore.exceptions import ClientError

from tasks.backups.actors import local_day, paid_instances
from tasks.backups.restore import restore_backup, verify_backup
from tasks.backups.run import back_up
from workers.db import create_pool
from workers.errors import JobError
from workers.s3 import export_s3_client, s3_client
from workers.settings import Settings

LIFECYCLE_RETENTION_RULE = "bindery-retention-backstop"
LIFECYCLE_UPLOADS_RULE = "bindery-abort-incomplete-uploads"
LIFECYCLE_EXPORTS_RULE = "bindery-export-expiry"
# S3's expiry counts whole days from the next midnight: an archive lasts at most 8 days,
# a day beyond the longest link.
EXPORT_RETENTION_DAYS = 7


@asynccontextmanager
async def _connected(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, Any]]:
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        async with s3_client(settings) as client:
            yield pool, client
    finally:
        await pool.close()


async def run(
    settings: Settings,
    instance_id: int | None,
    day: date | None,
    force: bool,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Back up one instance, or every paid one, for `day` (default: today in Paris), here
    and now, and read each back. An operator's run: not held to BACKUP_CONCURRENCY."""
    async with _connected(settings) as (pool, client):
        instance_ids = [instance_id] if instance_id is not None else await paid_instances(pool)
        the_day = day or local_day(datetime.now(UTC))
        return [
            {
                "instance_id": one,
                **await back_up(pool, settings, client, one, the_day, force=force, progress=progress),
            }
            for one in instance_ids
        ]


def _backup_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise JobError(f"not a backup id: {text!r}") from None


async def verify(settings: Settings, backup_id: str) -> dict[str, Any]:
    async with _connected(settings) as (pool, client):
        return await verify_backup(pool, settings, client, _backup_id(backup_id))


async def restore(settings: Settings, backup_id: str, target_url: str) -> dict[str, Any]:
    async with _connected(settings) as (pool, client):
        return await restore_backup(pool, settings, client, _backup_id(backup_id), target_url)


LISTED = """
    SELECT id, instance_id, day, generation, state, dump_bytes, object_bytes, parts,
           started_at, finished_at, restore_tested_at, error
      FROM backups
"""


async def list_backups(settings: Settings, instance_id: int | None, limit: int = 200) -> list[dict[str, Any]]:
    """The newest catalog rows first (one instance's, or all)."""
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        rows = await pool.fetch(
            LISTED
            + " WHERE $1::bigint IS NULL OR instance_id = $1 ORDER BY day DESC, started_at DESC LIMIT $2",
            instance_id,
            limit,
        )
    finally:
        await pool.close()
    return [dict(row) for row in rows]


async def status(settings: Settings, day: date | None) -> dict[str, Any]:
    """A night's run (default: the last one, today in Paris): how many backups are done,
    failed or in progress, which paid instances have none, sizes and durations."""
    the_day = day or local_day(datetime.now(UTC))
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        # The newest generation of each instance's backup of that day.
        rows = await pool.fetch(LISTED + " WHERE day = $1 ORDER BY instance_id, generation DESC", the_day)
        paid = await paid_instances(pool)
    finally:
        await pool.close()
    latest: dict[int, asyncpg.Record] = {}
    for row in rows:
        latest.setdefault(row["instance_id"], row)
    states = [row["state"] for row in latest.values()]
    durations = sorted(
        (row["finished_at"] - row["started_at"]).total_seconds()
        for row in latest.values()
        if row["finished_at"] is not None and row["state"] in ("complete", "verified")
    )
    return {
        "day": the_day.isoformat(),
        "done": sum(state in ("complete", "verified") for state in states),
        "verified": states.count("verified"),
        "failed": states.count("failed"),
        "in_progress": states.count("running"),
        "missing": sorted(set(paid) - set(latest)),
        "failures": [
            {"instance_id": row["instance_id"], "backup_id": str(row["id"]), "error": row["error"]}
            for row in latest.values()
            if row["state"] == "failed"
        ],
        "dump_bytes": sum(row["dump_bytes"] or 0 for row in latest.values()),
        "object_bytes": sum(row["object_bytes"] or 0 for row in latest.values()),
        "seconds_max": durations[-1] if durations else None,
        "seconds_median": durations[len(durations) // 2] if durations else None,
    }


def _uploads_rule() -> dict[str, Any]:
    return {
        "ID": LIFECYCLE_UPLOADS_RULE,
        "Filter": {"Prefix": ""},
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }


async def init_bucket(settings: Settings) -> list[dict[str, Any]]:
    """Create every bucket bindery writes to, if missing, and set its lifecycle rules.
    Idempotent.

    The backups' bucket: the backstops of the expiry job and the sweeper, objects expire
    `BACKUP_RETENTION_DAYS` + 2 days after they are written. The export archives' bucket:
    archives expire after `EXPORT_RETENTION_DAYS` (their links work 7 days at most). In
    both, incomplete multipart uploads are aborted after a day."""
    backups = [
        {
            "ID": LIFECYCLE_RETENTION_RULE,
            "Filter": {"Prefix": "instances/"},
            "Status": "Enabled",
            "Expiration": {"Days": settings.backup_retention_days + 2},
        },
        _uploads_rule(),
    ]
    exports = [
        {
            "ID": LIFECYCLE_EXPORTS_RULE,
            "Filter": {"Prefix": "exports/"},
            "Status": "Enabled",
            "Expiration": {"Days": EXPORT_RETENTION_DAYS},
        },
        _uploads_rule(),
    ]
    return [
        await _prepare_bucket(s3_client(settings), settings.s3_bucket, backups),
        await _prepare_bucket(export_s3_client(settings), settings.export_s3_bucket, exports),
    ]


async def _prepare_bucket(connecting: Any, bucket: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    async with connecting as client:
        try:
            await client.head_bucket(Bucket=bucket)
            created = False
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            await client.create_bucket(Bucket=bucket)
            created = True
        await client.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": rules}
        )
        applied = await client.get_bucket_lifecycle_configuration(Bucket=bucket)
    return {"bucket": bucket, "created": created, "rules": applied["Rules"]}
