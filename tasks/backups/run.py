"""One backup of one instance for one day: claimed in the catalog (tasks/backups/catalog.py),
streamed to S3, then a manifest (age-encrypted too), and only then `complete`; read back
at once, and then `verified`. The bucket holds ciphertext only. On any failure the
multipart upload is aborted and the row says `failed` with the stage.

A running backup keeps its lease with a heartbeat (workers/leases.py), so a worker killed
mid-upload frees its row within LEASE; the attempt that takes the row over aborts the
upload the dead one left (its id is in the row) and owns the row from then on: a late
finish of the old attempt changes nothing (fencing on `upload_id`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from tasks.backups.catalog import LEASE, Claim, claim_row, mark_failed
from tasks.backups.pipeline import BackupFailed, Streamed, part_size_for, seal, stream_backup
from tasks.backups.restore import verify_backup
from tasks.backups.snapshot import Snapshot, source_snapshot, table_counts
from tasks.backups.uploads import PartUploader, abort_upload
from workers.db import rows_affected
from workers.errors import JobError
from workers.leases import Held, heartbeat
from workers.settings import Settings


async def run_backup(
    pool: asyncpg.Pool,
    settings: Settings,
    client: Any,
    instance_id: int,
    day: date,
    *,
    force: bool = False,
    slots: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Back the instance up for `day`; what happened (`created`, the backup id and state).
    `slots`: at most that many backups running at once (NoSlot otherwise). `progress`
    is told (bytes dumped, database size) as the dump goes, from another thread."""
    database_url = await pool.fetchval("SELECT database_url FROM instances WHERE id = $1", instance_id)
    if database_url is None:
        raise JobError(f"unknown instance {instance_id}")
    claim = await claim_row(pool, instance_id, day, force, slots)
    if claim is None:
        return await _existing(pool, instance_id, day)
    row, bucket = claim.row, settings.s3_bucket
    upload_id = await _start_upload(pool, client, bucket, claim)
    try:
        # Fenced by the upload id: an attempt that took the row over made its own upload.
        async with heartbeat(pool, Held("backups", "id", row["id"], "upload_id", upload_id, LEASE)):
            streamed, version, counts = await _upload(
                settings, client, row, upload_id, database_url, instance_id, day, progress
            )
    except (Exception, asyncio.CancelledError) as error:
        await abort_upload(client, bucket, row["object_key"], upload_id)
        await mark_failed(pool, row["id"], upload_id, error)
        raise
    await _mark_complete(pool, row["id"], upload_id, streamed, version, counts)
    return {"backup_id": str(row["id"]), "state": "complete", "created": True}


async def _existing(pool: asyncpg.Pool, instance_id: int, day: date) -> dict[str, Any]:
    """The outcome when this run has nothing to do: the day's latest backup, as it stands."""
    existing = await pool.fetchrow(
        "SELECT id, state FROM backups WHERE instance_id = $1 AND day = $2 ORDER BY generation DESC LIMIT 1",
        instance_id,
        day,
    )
    assert existing is not None
    return {"backup_id": str(existing["id"]), "state": existing["state"], "created": False}


async def _start_upload(pool: asyncpg.Pool, client: Any, bucket: str, claim: Claim) -> str:
    """A new multipart upload for the claimed row (a dead attempt's is aborted first), named in the row."""
    row = claim.row
    if claim.abandoned_upload_id is not None:
        await abort_upload(client, bucket, row["object_key"], claim.abandoned_upload_id)
    try:
        upload = await client.create_multipart_upload(Bucket=bucket, Key=row["object_key"])
    except (Exception, asyncio.CancelledError) as error:
        await mark_failed(pool, row["id"], None, error)
        raise
    upload_id: str = upload["UploadId"]
    # Between the call above and this line a crash leaves an upload no row names: the
    # sweeper and the lifecycle rule abort it after a day.
    await pool.execute("UPDATE backups SET upload_id = $2 WHERE id = $1", row["id"], upload_id)
    return upload_id


async def _mark_complete(
    pool: asyncpg.Pool,
    backup_id: Any,
    upload_id: str,
    streamed: Streamed,
    version: str,
    counts: dict[str, int],
) -> None:
    """Fenced by the upload id: an attempt that lost its row to another writes nothing."""
    completed = await pool.execute(
        """UPDATE backups SET state = 'complete', dump_bytes = $3, object_bytes = $4, sha256 = $5, parts = $6,
                  pg_version = $7, table_counts = $8, finished_at = now(), lease_until = NULL
            WHERE id = $1 AND upload_id = $2 AND state = 'running'""",
        backup_id,
        upload_id,
        streamed.dump_bytes,
        streamed.object_bytes,
        streamed.sha256,
        streamed.parts,
        version,
        counts,
    )
    if not rows_affected(completed):
        raise BackupFailed(f"backup {backup_id}: another attempt took the row over while this one ran")


async def _upload(
    settings: Settings,
    client: Any,
    row: asyncpg.Record,
    upload_id: str,
    database_url: str,
    instance_id: int,
    day: date,
    progress: Callable[[int, int], None] | None,
) -> tuple[Streamed, str, dict[str, int]]:
    """Stream the dump into the multipart upload, complete it, write the manifest."""
    bucket, key = settings.s3_bucket, row["object_key"]
    started = datetime.now(UTC)
    parts = PartUploader(client, bucket, key, upload_id, asyncio.get_running_loop())

    def stream(snapshot: Snapshot) -> Streamed:
        streamed = stream_backup(
            database_url,
            settings.backup_recipients,
            part_size_for(snapshot.size),
            parts,
            snapshot.snapshot_id,
            (lambda dumped: progress(dumped, snapshot.size)) if progress is not None else None,
        )
        parts.finish()
        return streamed

    try:
        async with source_snapshot(database_url) as snapshot:
            # Counted while pg_dump runs: the snapshot is the same, the time is not spent twice.
            streaming = asyncio.ensure_future(asyncio.to_thread(stream, snapshot))
            try:
                counts = await table_counts(snapshot.connection)
            finally:
                streamed = await streaming  # the thread cannot be cancelled: always wait for it
    except BaseException:
        await asyncio.to_thread(parts.drain)  # nothing in flight when the caller aborts the upload
        raise
    await client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts.listing()}
    )
    manifest = {
        "backup_id": str(row["id"]),
        "instance_id": instance_id,
        "day": day.isoformat(),
        "object_key": key,
        "dump_bytes": streamed.dump_bytes,
        "object_bytes": streamed.object_bytes,
        "sha256": streamed.sha256,
        "parts": streamed.parts,
        "recipients": settings.backup_recipients,  # public keys: they name who can decrypt
        "postgresql_version": snapshot.version,
        "table_counts": counts,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "format": "pg_dump -Fc -Z0 | zstd | age",
    }
    await _put_manifest(client, bucket, row["manifest_key"], manifest, settings.backup_recipients)
    return streamed, snapshot.version, counts


async def _put_manifest(
    client: Any, bucket: str, key: str, manifest: dict[str, Any], recipients: list[str]
) -> None:
    # Written last: a backup without its manifest is not a backup. Encrypted like the dump:
    # table names and row counts say what a customer keeps (`patients`, `salaries`…).
    await client.put_object(Bucket=bucket, Key=key, Body=seal(json.dumps(manifest).encode(), recipients))


async def back_up(
    pool: asyncpg.Pool,
    settings: Settings,
    client: Any,
    instance_id: int,
    day: date,
    *,
    force: bool = False,
    slots: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Back up, then read the backup back (sha256, decrypt, `pg_restore --list`): only a
    backup that reads back is `verified`, and freshness counts only those. A complete
    backup left unverified by an earlier attempt is verified now."""
    outcome = await run_backup(
        pool, settings, client, instance_id, day, force=force, slots=slots, progress=progress
    )
    if outcome["state"] == "complete":
        await verify_backup(pool, settings, client, uuid.UUID(outcome["backup_id"]))
        outcome["state"] = "verified"
    return outcome
