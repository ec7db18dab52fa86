"""The backups catalog's claims: which attempt owns a backup row, and when none may start.

The same (instance, day) twice makes one backup: a complete (or verified) one is kept,
a running one with a live lease is left to its worker, a failed or abandoned one is
tried again under the same row. `force` makes a new generation deliberately. Claims are
counted under one advisory lock, so BACKUP_CONCURRENCY holds across workers, and an
erasure that has begun is seen by every claim after it (`backups_being_written`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

import asyncpg

from tasks.backups.pipeline import BackupFailed
from tasks.erasure import erasure_has_begun
from workers.errors import JobError
from workers.leases import RENEWED_LEASE, abandoned, alive
from workers.s3 import describe_s3_error

LEASE = RENEWED_LEASE  # kept by a heartbeat while the backup runs
CLAIM_LOCK = 0x62_61_63_6B  # pg_advisory_xact_lock key: one claim at a time counts the slots


class ErasureRunning(JobError):
    """The instance's account is being erased: backing it up would undo part of that."""


class NoSlot(Exception):
    """Every BACKUP_CONCURRENCY slot is taken: try again later."""


@dataclass(frozen=True)
class Claim:
    row: asyncpg.Record
    abandoned_upload_id: str | None  # the multipart upload of a dead attempt, to abort


# Backups being written now, by any worker: those whose holder's lease still runs.
RUNNING_NOW = "SELECT count(*) FROM backups WHERE " + alive("running")  # nosec B608: a fixed predicate of workers.leases


async def claim_row(
    pool: asyncpg.Pool, instance_id: int, day: date, force: bool, slots: int | None
) -> Claim | None:
    """The catalog row this run owns, or None when there is nothing to do (done already,
    or another worker is at it). Raises NoSlot when `slots` backups already run."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CLAIM_LOCK)
        # An erasure that has begun deletes the instance's backups: none may start after it.
        if await erasure_has_begun(conn, instance_id):
            raise ErasureRunning(f"instance {instance_id}: its account's erasure has begun; no backup")
        latest = await conn.fetchrow(
            "SELECT * FROM backups WHERE instance_id = $1 AND day = $2 ORDER BY generation DESC LIMIT 1",
            instance_id,
            day,
        )
        retake = latest is not None and not force
        retakable = f"SELECT state = 'failed' OR {abandoned('running')} FROM backups"  # nosec B608
        if retake:
            assert latest is not None
            if not await conn.fetchval(retakable + " WHERE id = $1", latest["id"]):
                return None
        if slots is not None:
            running = await conn.fetchval(RUNNING_NOW)
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


async def backups_being_written(pool: asyncpg.Pool, instance_ids: list[int]) -> int:
    """How many backups of these instances are being written now. Taken under the claim
    lock: a claim that looked before the caller's erasure began has its row by then."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CLAIM_LOCK)
        writing: int = await conn.fetchval(
            f"""SELECT count(*) FROM backups
                WHERE instance_id = ANY($1::bigint[]) AND {alive("running")}""",  # nosec B608: workers.leases' fixed predicates, no input
            instance_ids,
        )
    return writing


async def mark_failed(
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
