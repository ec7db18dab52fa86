"""One backup of one instance for one day: claimed in the catalog, streamed to S3, then
a manifest (age-encrypted too), and only then `complete`; read back at once, and then
`verified`. The bucket holds ciphertext only.

The same (instance, day) twice makes one backup: a complete (or verified) one is kept,
a running one with a live lease is left to its worker, a failed or abandoned one is
tried again under the same row. `force` makes a new generation deliberately. On any
failure the multipart upload is aborted and the row says `failed` with the stage.

A running backup renews its lease every HEARTBEAT, so a worker killed mid-upload frees
its row within LEASE; the attempt that takes the row over aborts the upload the dead one
left (its id is in the row) and owns the row from then on: a late finish of the old
attempt changes nothing (fencing on `upload_id`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any

import asyncpg
from botocore.exceptions import BotoCoreError, ClientError

from tasks.backups.pipeline import BackupFailed, Streamed, part_size_for, seal, stream_backup
from tasks.backups.restore import verify_backup
from workers.db import quote_identifier, rows_affected
from workers.errors import JobError
from workers.jobs import describe_error
from workers.logs import get_logger
from workers.s3 import describe_s3_error
from workers.settings import Settings

log = get_logger(__name__)
LEASE = timedelta(minutes=2)
HEARTBEAT = LEASE / 4
IN_FLIGHT = 2  # parts sent to S3 at once while the pipeline writes the next
CLAIM_LOCK = 0x62_61_63_6B  # pg_advisory_xact_lock key: one claim at a time counts the slots


# An erasure that has begun (not one in its grace period, which may still be cancelled)
# deletes the instance's backups: none may start after it.
ERASING = """
    SELECT 1 FROM erasure_requests r JOIN instances i ON i.account_id = r.account_id
     WHERE i.id = $1 AND r.state = 'running'
"""


class ErasureRunning(JobError):
    """The instance's account is being erased: backing it up would undo part of that."""


class NoSlot(Exception):
    """Every BACKUP_CONCURRENCY slot is taken: try again later."""


@dataclass(frozen=True)
class Claim:
    row: asyncpg.Record
    abandoned_upload_id: str | None  # the multipart upload of a dead attempt, to abort


async def _claim(
    pool: asyncpg.Pool, instance_id: int, day: date, force: bool, slots: int | None
) -> Claim | None:
    """The catalog row this run owns, or None when there is nothing to do (done already,
    or another worker is at it). Raises NoSlot when `slots` backups already run."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CLAIM_LOCK)
        if await conn.fetchval(ERASING, instance_id):
            raise ErasureRunning(f"instance {instance_id}: its account's erasure has begun; no backup")
        latest = await conn.fetchrow(
            "SELECT * FROM backups WHERE instance_id = $1 AND day = $2 ORDER BY generation DESC LIMIT 1",
            instance_id,
            day,
        )
        retake = latest is not None and not force
        abandoned = "SELECT state = 'failed' OR (state = 'running' AND lease_until < now()) FROM backups"
        if retake:
            assert latest is not None
            if not await conn.fetchval(abandoned + " WHERE id = $1", latest["id"]):
                return None
        if slots is not None:
            running = await conn.fetchval(
                "SELECT count(*) FROM backups WHERE state = 'running' AND lease_until >= now()"
            )
            if running >= slots:
                raise NoSlot(f"{running} backups are running (BACKUP_CONCURRENCY {slots})")
        if retake:
            assert latest is not None
            retaken = await conn.fetchrow(
                """UPDATE backups SET state = 'running', started_at = now(), error = NULL, finished_at = NULL,
                          lease_until = now() + $2::interval, upload_id = NULL
                    WHERE id = $1 RETURNING *""",
                latest["id"],
                LEASE,
            )
            assert retaken is not None
            return Claim(retaken, latest["upload_id"])
        backup_id = uuid.uuid4()
        prefix = f"instances/{instance_id}/{day.isoformat()}/{backup_id}"
        claimed = await conn.fetchrow(
            """INSERT INTO backups (id, instance_id, day, generation, object_key, manifest_key, lease_until)
               VALUES ($1, $2, $3, $4, $5, $6, now() + $7::interval) RETURNING *""",
            backup_id,
            instance_id,
            day,
            (latest["generation"] + 1) if latest is not None else 1,
            f"{prefix}.dump.zst.age",
            f"{prefix}.manifest.json.age",
            LEASE,
        )
        assert claimed is not None
        return Claim(claimed, None)


@dataclass(frozen=True)
class Snapshot:
    size: int
    version: str
    snapshot_id: str
    connection: asyncpg.Connection  # in the snapshot's transaction, for the row counts


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
        # bandit: catalog names, quoted
        counts[name] = int(await conn.fetchval("SELECT count(*) FROM " + name))  # nosec B608
    return counts


@asynccontextmanager
async def source_snapshot(database_url: str) -> AsyncIterator[Snapshot]:
    """A snapshot of the instance's database, exported for pg_dump (`--snapshot`) and held
    open while it runs: row counts taken in it are exactly what the dump contains."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot_id: str = await conn.fetchval("SELECT pg_export_snapshot()")
            size: int = await conn.fetchval("SELECT pg_database_size(current_database())")
            version: str = await conn.fetchval("SHOW server_version")
            yield Snapshot(size, version, snapshot_id, conn)
    finally:
        await conn.close()


async def _abort_upload(client: Any, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload; one S3 cannot abort now is left to the sweeper and the
    bucket's lifecycle rule, and must not hide the failure that led here."""
    try:
        await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchUpload":
            log.warning("multipart upload not aborted", error=describe_s3_error(error))
    except BotoCoreError as error:
        log.warning("multipart upload not aborted", error=describe_s3_error(error))


async def _keep_lease(pool: asyncpg.Pool, backup_id: uuid.UUID, upload_id: str) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT.total_seconds())
        try:
            await pool.execute(
                """UPDATE backups SET lease_until = now() + $3::interval
                    WHERE id = $1 AND upload_id = $2 AND state = 'running'""",
                backup_id,
                upload_id,
                LEASE,
            )
        except (OSError, asyncpg.PostgresError) as error:  # the next beat may get through
            log.warning("backup lease not renewed", error=describe_error(error))


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
    claim = await _claim(pool, instance_id, day, force, slots)
    if claim is None:
        existing = await pool.fetchrow(
            """SELECT id, state FROM backups WHERE instance_id = $1 AND day = $2
                ORDER BY generation DESC LIMIT 1""",
            instance_id,
            day,
        )
        assert existing is not None
        return {"backup_id": str(existing["id"]), "state": existing["state"], "created": False}
    row, bucket = claim.row, settings.s3_bucket
    if claim.abandoned_upload_id is not None:
        await _abort_upload(client, bucket, row["object_key"], claim.abandoned_upload_id)
    try:
        upload = await client.create_multipart_upload(Bucket=bucket, Key=row["object_key"])
    except (Exception, asyncio.CancelledError) as error:
        await _mark_failed(pool, row["id"], None, error)
        raise
    upload_id: str = upload["UploadId"]
    # Between the call above and this line a crash leaves an upload no row names: the
    # sweeper and the lifecycle rule abort it after a day.
    await pool.execute("UPDATE backups SET upload_id = $2 WHERE id = $1", row["id"], upload_id)
    heartbeat = asyncio.create_task(_keep_lease(pool, row["id"], upload_id))
    try:
        streamed, version, counts = await _upload(
            settings, client, row, upload_id, database_url, instance_id, day, progress
        )
    except (Exception, asyncio.CancelledError) as error:
        await _abort_upload(client, bucket, row["object_key"], upload_id)
        await _mark_failed(pool, row["id"], upload_id, error)
        raise
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
    completed = await pool.execute(
        """UPDATE backups SET state = 'complete', dump_bytes = $3, object_bytes = $4, sha256 = $5, parts = $6,
                  pg_version = $7, table_counts = $8, finished_at = now(), lease_until = NULL
            WHERE id = $1 AND upload_id = $2 AND state = 'running'""",
        row["id"],
        upload_id,
        streamed.dump_bytes,
        streamed.object_bytes,
        streamed.sha256,
        streamed.parts,
        version,
        counts,
    )
    if not rows_affected(completed):
        raise BackupFailed(f"backup {row['id']}: another attempt took the row over while this one ran")
    return {"backup_id": str(row["id"]), "state": "complete", "created": True}


async def _mark_failed(
    pool: asyncpg.Pool, backup_id: uuid.UUID, upload_id: str | None, error: BaseException
) -> None:
    reason = str(error) if isinstance(error, BackupFailed) else describe_s3_error(error)
    await pool.execute(
        """UPDATE backups SET state = 'failed', error = $3, finished_at = now(), lease_until = NULL
            WHERE id = $1 AND upload_id IS NOT DISTINCT FROM $2 AND state = 'running'""",
        backup_id,
        upload_id,
        reason,
    )


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
    parts = _PartUploader(client, bucket, key, upload_id, asyncio.get_running_loop())

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
    # Written last: a backup without its manifest is not a backup. Encrypted like the dump:
    # table names and row counts say what a customer keeps (`patients`, `salaries`…).
    sealed = seal(json.dumps(manifest).encode(), settings.backup_recipients)
    await client.put_object(Bucket=bucket, Key=row["manifest_key"], Body=sealed)
    return streamed, snapshot.version, counts


class _PartUploader:
    """`upload_part` for the pipeline, called from its thread: each part goes to S3 on the
    event loop while the pipeline writes the next; at most IN_FLIGHT wait at once."""

    def __init__(self, client: Any, bucket: str, key: str, upload_id: str, loop: asyncio.AbstractEventLoop):
        self.client, self.bucket, self.key, self.upload_id, self.loop = client, bucket, key, upload_id, loop
        self.in_flight: deque[tuple[int, Future[Any], IO[bytes]]] = deque()
        self.etags: dict[int, str] = {}

    def __call__(self, number: int, body: IO[bytes], size: int) -> None:
        while len(self.in_flight) >= IN_FLIGHT:
            self._wait_oldest()
        call = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
            ContentLength=size,
        )
        self.in_flight.append((number, asyncio.run_coroutine_threadsafe(call, self.loop), body))

    def _wait_oldest(self) -> None:
        number, sent, body = self.in_flight.popleft()
        try:
            self.etags[number] = sent.result()["ETag"]
        finally:
            body.close()

    def finish(self) -> None:
        """Wait for every part; raise the first failure."""
        while self.in_flight:
            self._wait_oldest()

    def drain(self) -> None:
        """After a failure: let what is in flight end, whatever it says."""
        while self.in_flight:
            with contextlib.suppress(BaseException):
                self._wait_oldest()

    def listing(self) -> list[dict[str, Any]]:
        return [{"PartNumber": number, "ETag": self.etags[number]} for number in sorted(self.etags)]


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
