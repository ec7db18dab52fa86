"""Proof that backups restore: a recent backup is restored into a scratch database and
its tables and row counts compared with the source's at dump time (the counts were
taken in the very snapshot pg_dump dumped). Passing marks the backup `verified` and
records `restore_tested_at`.

One backup a night, and the instances take turns: the one restore-tested longest ago
(or never) goes first, so every instance is restored in turn."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import asyncpg

from tasks.backups.pipeline import BackupFailed
from tasks.backups.restore import restore_backup
from tasks.backups.run import table_counts
from workers.db import connect, drop_database, ensure_database
from workers.settings import Settings


async def next_to_restore(pool: asyncpg.Pool) -> uuid.UUID | None:
    """The newest backup, of the last two days, of the instance restore-tested longest ago."""
    backup_id: uuid.UUID | None = await pool.fetchval(
        """
        SELECT b.id FROM backups b
         WHERE b.state IN ('complete', 'verified') AND b.restore_tested_at IS NULL
           AND b.finished_at > now() - interval '2 days'
         ORDER BY (SELECT max(t.restore_tested_at) FROM backups t WHERE t.instance_id = b.instance_id)
                  ASC NULLS FIRST,
                  b.finished_at DESC
         LIMIT 1
        """
    )
    return backup_id


async def restore_test(
    pool: asyncpg.Pool, settings: Settings, client: Any, backup_id: uuid.UUID
) -> dict[str, Any]:
    expected = await pool.fetchval("SELECT table_counts FROM backups WHERE id = $1", backup_id)
    if expected is None:
        raise BackupFailed(f"backup {backup_id} has no table counts to compare")
    scratch = settings.database_url.rsplit("/", 1)[0] + f"/bindery_restore_test_{secrets.token_hex(4)}"
    await ensure_database(scratch)
    try:
        await restore_backup(pool, settings, client, backup_id, scratch)
        conn = await connect(scratch)
        try:
            restored = await table_counts(conn)
        finally:
            await conn.close()
    finally:
        await drop_database(scratch)
    if restored != expected:
        differing = sorted(
            set(restored) ^ set(expected) | {t for t in restored if restored.get(t) != expected.get(t)}
        )
        raise BackupFailed(
            f"restore test of backup {backup_id}: {len(differing)} table(s) differ from the source"
        )
    await pool.execute(
        """UPDATE backups SET restore_tested_at = now(),
                  state = CASE state WHEN 'complete' THEN 'verified' ELSE state END
            WHERE id = $1""",
        backup_id,
    )
    return {"backup_id": str(backup_id), "tables": len(restored), "rows": sum(restored.values())}
