"""What the `bindery backup …` commands do, as plain functions."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from tasks.backups.actors import local_day, paid_instances
from tasks.backups.restore import restore_backup, verify_backup
from tasks.backups.run import run_backup
from workers.db import create_pool
from workers.jobs import JobError
from workers.settings import Settings


async def run(
    settings: Settings, instance_id: int | None, day: date | None, force: bool
) -> list[dict[str, Any]]:
    """Back up one instance, or every paid one, for `day` (default: today in Paris), here and now."""
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        instance_ids = [instance_id] if instance_id is not None else await paid_instances(pool)
        the_day = day or local_day(datetime.now(UTC))
        return [
            {"instance_id": one, **await run_backup(pool, settings, one, the_day, force=force)}
            for one in instance_ids
        ]
    finally:
        await pool.close()


def _backup_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise JobError(f"not a backup id: {text!r}") from None


async def verify(settings: Settings, backup_id: str) -> dict[str, Any]:
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        return await verify_backup(pool, settings, settings.backup_identity_file, _backup_id(backup_id))
    finally:
        await pool.close()


async def restore(settings: Settings, backup_id: str, target_url: str) -> dict[str, Any]:
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        return await restore_backup(
            pool, settings, settings.backup_identity_file, _backup_id(backup_id), target_url
        )
    finally:
        await pool.close()
