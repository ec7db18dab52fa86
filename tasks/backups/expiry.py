"""Only the last 30 days are kept: a backup whose day is BACKUP_RETENTION_DAYS or more
before today (Paris) has its object and manifest deleted and its row marked `expired`.

Idempotent: an expired row is not looked at again, and deleting a missing object is
not an error in S3. The row keeps sizes and hashes: they say nothing of the data.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import asyncpg

from workers.settings import Settings


async def expire_backups(pool: asyncpg.Pool, settings: Settings, s3: Any, today: date) -> int:
    """Expire what is too old on `today`; how many backups were expired."""
    oldest_kept = today - timedelta(days=settings.backup_retention_days - 1)
    rows = await pool.fetch(
        "SELECT id, object_key, manifest_key FROM backups WHERE day < $1 AND state <> 'expired' ORDER BY day",
        oldest_kept,
    )
    for start in range(0, len(rows), 500):  # DeleteObjects takes 1,000 keys: two per backup
        batch = rows[start : start + 500]
        keys = [{"Key": row[column]} for row in batch for column in ("object_key", "manifest_key")]
        response = await s3.delete_objects(Bucket=settings.s3_bucket, Delete={"Objects": keys, "Quiet": True})
        if response.get("Errors"):
            raise RuntimeError(f"S3 refused to delete {len(response['Errors'])} expired backup objects")
        await pool.execute(
            "UPDATE backups SET state = 'expired' WHERE id = ANY($1::uuid[])", [row["id"] for row in batch]
        )
    return len(rows)
