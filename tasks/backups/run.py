"""One backup of one instance for one day: claimed in the catalog, streamed to S3, then
a manifest, and only then `complete`.

The same (instance, day) twice makes one backup: a complete (or verified) one is kept,
a running one with a live lease is left to its worker, a failed or abandoned one is
tried again under the same row. `force` makes a new generation deliberately. On any
failure the multipart upload is aborted and the row says `failed` with the stage.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from tasks.backups.pipeline import BackupFailed, part_size_for, stream_backup
from workers.db import quote_identifier
from workers.jobs import JobError, describe_error
from workers.s3 import s3_client
from workers.settings import Settings

LEASE = timedelta(hours=6)


async def _claim(conn: asyncpg.Pool, instance_id: int, day: date, force: bool) -> asyncpg.Record | None:
    """The catalog row this run owns, or None when there is nothing to do."""
    latest = await conn.fetchrow(
        "SELECT * FROM backups WHERE instance_id = $1 AND day = $2 ORDER BY generation DESC LIMIT 1",
        instance_id,
        day,
    )
    if latest is not None and not force:
        if latest["state"] in ("complete", "verified", "expired"):
            return None
        retaken: asyncpg.Record | None = await conn.fetchrow(
            """UPDATE backups SET state = 'running', started_at = now(), lease_until = now() + $2::interval,
                      error = NULL, finished_at = NULL
                WHERE id = $1 AND (state = 'failed' OR (state = 'running' AND lease_until < now()))
               RETURNING *""",
            latest["id"],
            LEASE,
        )
        return retaken
    backup_id = uuid.uuid4()
    prefix = f"instances/{instance_id}/{day.isoformat()}/{backup_id}"
    claimed: asyncpg.Record | None = await conn.fetchrow(
        """INSERT INTO backups (id, instance_id, day, generation, object_key, manifest_key, lease_until)
           VALUES ($1, $2, $3, $4, $5, $6, now() + $7::interval)
           ON CONFLICT (instance_id, day, generation) DO NOTHING RETURNING *""",
        backup_id,
        instance_id,
        day,
        (latest["generation"] + 1) if latest is not None else 1,
        f"{prefix}.dump.zst.age",
        f"{prefix}.manifest.json",
        LEASE,
    )
    return claimed


@dataclass(frozen=True)
class Snapshot:
    size: int
    version: str
    snapshot_id: str
    table_counts: dict[str, int]


async def table_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Rows per user table, by schema-qualified name."""
    tables = await conn.fetch(
        """SELECT table_schema, table_name FROM information_schema.tables
            WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
            ORDER BY 1, 2"""
    )
    counts = {}
    for table in tables:
        name = quote_identifier(table["table_schema"]) + "." + quote_identifier(table["table_name"])
        counts[name] = int(await conn.fetchval("SELECT count(*) FROM " + name))
    return counts


@asynccontextmanager
async def source_snapshot(database_url: str) -> AsyncIterator[Snapshot]:
    """A snapshot of the instance's database, exported for pg_dump (`--snapshot`) and held
    open while it runs: the row counts taken here are exactly what the dump contains."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot_id: str = await conn.fetchval("SELECT pg_export_snapshot()")
            size: int = await conn.fetchval("SELECT pg_database_size(current_database())")
            version: str = await conn.fetchval("SHOW server_version")
            counts = await table_counts(conn)
            yield Snapshot(size, version, snapshot_id, counts)
    finally:
        await conn.close()


async def run_backup(
    pool: asyncpg.Pool, settings: Settings, instance_id: int, day: date, *, force: bool = False
) -> dict[str, Any]:
    """Back the instance up for `day`; what happened (`created`, the backup id and state)."""
    database_url = await pool.fetchval("SELECT database_url FROM instances WHERE id = $1", instance_id)
    if database_url is None:
        raise JobError(f"unknown instance {instance_id}")
    row = await _claim(pool, instance_id, day, force)
    if row is None:
        existing = await pool.fetchrow(
            """SELECT id, state FROM backups WHERE instance_id = $1 AND day = $2
                ORDER BY generation DESC LIMIT 1""",
            instance_id,
            day,
        )
        assert existing is not None
        return {"backup_id": str(existing["id"]), "state": existing["state"], "created": False}
    started = datetime.now(UTC)
    loop = asyncio.get_running_loop()
    async with s3_client(settings) as client:
        bucket = settings.s3_bucket
        upload = await client.create_multipart_upload(Bucket=bucket, Key=row["object_key"])
        etags: dict[int, str] = {}

        def upload_part(number: int, data: bytes) -> None:
            call = client.upload_part(
                Bucket=bucket,
                Key=row["object_key"],
                UploadId=upload["UploadId"],
                PartNumber=number,
                Body=data,
            )
            etags[number] = asyncio.run_coroutine_threadsafe(call, loop).result()["ETag"]

        try:
            async with source_snapshot(database_url) as snapshot:
                streamed = await asyncio.to_thread(
                    stream_backup,
                    database_url,
                    settings.backup_recipients,
                    part_size_for(snapshot.size),
                    upload_part,
                    snapshot.snapshot_id,
                )
            version = snapshot.version
            await client.complete_multipart_upload(
                Bucket=bucket,
                Key=row["object_key"],
                UploadId=upload["UploadId"],
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]},
            )
            finished = datetime.now(UTC)
            manifest = {
                "backup_id": str(row["id"]),
                "instance_id": instance_id,
                "day": day.isoformat(),
                "object_key": row["object_key"],
                "dump_bytes": streamed.dump_bytes,
                "object_bytes": streamed.object_bytes,
                "sha256": streamed.sha256,
                "parts": streamed.parts,
                "recipients": settings.backup_recipients,  # public keys: they name who can decrypt
                "postgresql_version": version,
                "table_counts": snapshot.table_counts,
                "started_at": started.isoformat(),
                "finished_at": finished.isoformat(),
                "format": "pg_dump -Fc -Z0 | zstd | age",
            }
            # Written last: a backup without its manifest is not a backup.
            await client.put_object(
                Bucket=bucket, Key=row["manifest_key"], Body=json.dumps(manifest).encode()
            )
        except (Exception, asyncio.CancelledError) as error:
            await client.abort_multipart_upload(
                Bucket=bucket, Key=row["object_key"], UploadId=upload["UploadId"]
            )
            reason = str(error) if isinstance(error, BackupFailed) else describe_error(error)
            await pool.execute(
                """UPDATE backups SET state = 'failed', error = $2, finished_at = now(), lease_until = NULL
                    WHERE id = $1""",
                row["id"],
                reason,
            )
            raise
    await pool.execute(
        """UPDATE backups SET state = 'complete', dump_bytes = $2, object_bytes = $3, sha256 = $4, parts = $5,
                  pg_version = $6, table_counts = $7, finished_at = now(), lease_until = NULL
            WHERE id = $1""",
        row["id"],
        streamed.dump_bytes,
        streamed.object_bytes,
        streamed.sha256,
        streamed.parts,
        version,
        snapshot.table_counts,
    )
    return {"backup_id": str(row["id"]), "state": "complete", "created": True}
