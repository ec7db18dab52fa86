"""Read a backup back: download, check its sha256, decrypt (BACKUP_IDENTITY_FILE),
decompress, and hand the dump to `pg_restore` — `--list` to verify, or into a database."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from tasks.backups.pipeline import BackupFailed, restore_stream
from workers.errors import JobError
from workers.settings import Settings

CHUNK = 1 << 20


def read_identity(path: Path) -> str:
    lines = [line.strip() for line in path.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-")]
    if not lines:
        raise JobError(f"{path} holds no age identity (AGE-SECRET-KEY-…)")
    return lines[0]


async def read_back(
    pool: asyncpg.Pool, settings: Settings, client: Any, backup_id: uuid.UUID, pg_restore: list[str]
) -> dict[str, Any]:
    """Stream the backup into `pg_restore` with `pg_restore`'s arguments; raise if anything
    (the hash, the decryption, pg_restore) fails."""
    row = await pool.fetchrow("SELECT object_key, sha256, state FROM backups WHERE id = $1", backup_id)
    if row is None:
        raise JobError(f"unknown backup {backup_id}")
    if row["state"] not in ("complete", "verified"):
        raise JobError(f"backup {backup_id} is {row['state']}, not complete")
    identity = read_identity(settings.backup_identity_file)
    loop = asyncio.get_running_loop()
    digest = hashlib.sha256()
    response = await client.get_object(Bucket=settings.s3_bucket, Key=row["object_key"])
    body = response["Body"]

    def read_chunk() -> bytes:
        chunk: bytes = asyncio.run_coroutine_threadsafe(body.read(CHUNK), loop).result()
        digest.update(chunk)
        return chunk

    def restore() -> tuple[int, bytes]:
        # Spooled to disk, not piped: pg_restore --list stops reading after the table
        # of contents, and the whole object must pass the hash. Memory stays bounded.
        with tempfile.NamedTemporaryFile(prefix="bindery-restore-", suffix=".dump") as spool:
            restore_stream(read_chunk, identity, spool)
            spool.flush()
            # bandit: a fixed argv, no shell; pg_restore from PATH, as installed.
            argv = ["pg_restore", *pg_restore, spool.name]  # nosec B607
            done = subprocess.run(argv, capture_output=True, check=False)  # nosec B603
        return done.returncode, done.stdout

    status, listing = await asyncio.to_thread(restore)
    if digest.hexdigest() != row["sha256"]:
        raise BackupFailed(f"backup {backup_id}: the object's sha256 differs from the catalog's")
    if status != 0:
        raise BackupFailed(f"backup {backup_id}: pg_restore exited with status {status}")
    return {"backup_id": str(backup_id), "sha256": digest.hexdigest(), "entries": listing.count(b"\n")}


async def verify_backup(
    pool: asyncpg.Pool, settings: Settings, client: Any, backup_id: uuid.UUID
) -> dict[str, Any]:
    """Download, check, decrypt and `pg_restore --list`; the catalog then says `verified`."""
    result = await read_back(pool, settings, client, backup_id, ["--list"])
    await pool.execute(
        "UPDATE backups SET state = 'verified' WHERE id = $1 AND state = 'complete'", backup_id
    )
    return result


async def restore_backup(
    pool: asyncpg.Pool, settings: Settings, client: Any, backup_id: uuid.UUID, target_url: str
) -> dict[str, Any]:
    return await read_back(
        pool, settings, client, backup_id, ["--no-owner", "--exit-on-error", "--dbname", target_url]
    )
