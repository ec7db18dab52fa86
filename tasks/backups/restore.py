"""Read a backup back: download, check its sha256, decrypt (BACKUP_IDENTITY_FILE),
decompress, and hand the dump to `pg_restore` — `--list` to verify, or into a database."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import subprocess
import threading
import uuid
from pathlib import Path
from typing import IO, Any

import asyncpg

from tasks.backups.pipeline import BackupFailed, restore_stream
from workers.errors import JobError
from workers.libpq import tool_connection
from workers.settings import Settings

CHUNK = 1 << 20


def read_identity(path: Path) -> str:
    lines = [line.strip() for line in path.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-")]
    if not lines:
        raise JobError(f"{path} holds no age identity (AGE-SECRET-KEY-…)")
    return lines[0]


class _UntilClosed:
    """pg_restore's stdin; once pg_restore has read all it wants, the rest is dropped."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.pipe: IO[bytes] | None = pipe

    def write(self, data: bytes) -> int:
        if self.pipe is not None:
            try:
                self.pipe.write(data)
            except BrokenPipeError:
                self.pipe = None
        return len(data)

    def flush(self) -> None:
        self.write(b"")

    def close(self) -> None:
        if self.pipe is not None:
            with contextlib.suppress(BrokenPipeError):
                self.pipe.close()
            self.pipe = None


async def read_back(
    pool: asyncpg.Pool,
    settings: Settings,
    client: Any,
    backup_id: uuid.UUID,
    pg_restore: list[str],
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Stream the backup into `pg_restore` with `pg_restore`'s arguments (run in `env`);
    raise if anything (the hash, the decryption, pg_restore) fails."""
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
        # Piped, never written to disk: a dump on disk is the customer's data in clear for
        # whoever finds it after a crash. The whole object is read and hashed even when
        # pg_restore stops early (`--list` reads only the table of contents).
        # bandit: a fixed argv, no shell; pg_restore from PATH, as installed.
        argv = ["pg_restore", *pg_restore]  # nosec B607
        with subprocess.Popen(  # nosec B603
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        ) as process:
            stdin, stdout = process.stdin, process.stdout
            assert stdin is not None and stdout is not None
            listing: list[bytes] = []
            # Read apart: a long listing would fill its pipe while we block writing stdin.
            reader = threading.Thread(target=lambda: listing.append(stdout.read()))
            reader.start()
            sink = _UntilClosed(stdin)
            try:
                restore_stream(read_chunk, identity, sink)
            finally:
                sink.close()
                status = process.wait()
                reader.join()
        return status, b"".join(listing)

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
    url, env = tool_connection(target_url)
    return await read_back(
        pool, settings, client, backup_id, ["--no-owner", "--exit-on-error", "--dbname", url], env
    )
