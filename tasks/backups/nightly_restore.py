"""Proof that backups restore: a recent backup is restored into a scratch database and
its tables and row counts compared with the source's at dump time (the counts were
taken in the very snapshot pg_dump dumped). Passing marks the backup `verified` and
records `restore_tested_at`.

One backup a night, and the instances take turns: the one restore-tested longest ago
(or never) goes first, so every instance is restored in turn.

The scratch database holds a customer's data in clear. Its run holds an advisory lock
named after it for as long as it exists; a scratch database whose lock nobody holds was
left by a run that died (kill -9, a lost machine), and the sweeper drops it, as does
the next restore test before it starts."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import asyncpg

from tasks.backups.pipeline import BackupFailed
from tasks.backups.restore import restore_backup
from tasks.backups.snapshot import table_counts
from workers.db import connect, drop_database, ensure_database, on_same_server
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


SCRATCH_PREFIX = "bindery_restore_test_"
SCRATCH_LOCK = 0x72_65_73_74  # first key of the scratch databases' advisory locks
TRY_LOCK = "SELECT pg_try_advisory_lock($1::int, hashtext($2))"
LOCK = "SELECT pg_advisory_lock($1::int, hashtext($2))"
UNLOCK = "SELECT pg_advisory_unlock($1::int, hashtext($2))"


async def drop_abandoned_scratch(pool: asyncpg.Pool, settings: Settings) -> int:
    """Drop the scratch databases no live restore test holds; how many."""
    names = await pool.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", SCRATCH_PREFIX)
    dropped = 0
    async with pool.acquire() as conn:
        for row in names:
            if not await conn.fetchval(TRY_LOCK, SCRATCH_LOCK, row["datname"]):
                continue  # its run is alive
            try:
                await drop_database(on_same_server(settings.database_url, row["datname"]))
                dropped += 1
            finally:
                await conn.execute(UNLOCK, SCRATCH_LOCK, row["datname"])
    return dropped


async def restore_and_compare(
    pool: asyncpg.Pool, settings: Settings, client: Any, backup_id: uuid.UUID
) -> dict[str, Any]:
    expected = await pool.fetchval("SELECT table_counts FROM backups WHERE id = $1", backup_id)
    if expected is None:
        raise BackupFailed(f"backup {backup_id} has no table counts to compare")
    await drop_abandoned_scratch(pool, settings)
    name = SCRATCH_PREFIX + secrets.token_hex(4)
    scratch = on_same_server(settings.database_url, name)
    async with pool.acquire() as holder:
        await holder.fetchval(LOCK, SCRATCH_LOCK, name)
        try:
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
        finally:
            await holder.execute(UNLOCK, SCRATCH_LOCK, name)
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
