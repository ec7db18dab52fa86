"""The sweeper: what the bucket holds that the catalog does not know goes.

An object under `instances/` that is neither the object nor the manifest of a catalog
row that is not `expired` is deleted once it is older than a grace (a backup being
written now has its row already, but give the clock some slack); multipart uploads
started more than a day ago are aborted (a worker that died mid-upload left them); a
restore test's scratch database left by a run that died is dropped
(tasks/backups/nightly_restore.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tasks.backups.nightly_restore import drop_abandoned_scratch
from workers.settings import Settings

GRACE = timedelta(hours=1)
STALE_UPLOAD = timedelta(days=1)


async def sweep(
    pool: asyncpg.Pool, settings: Settings, s3: Any, now: datetime | None = None
) -> dict[str, int]:
    now = now or datetime.now(UTC)
    rows = await pool.fetch("SELECT object_key, manifest_key FROM backups WHERE state <> 'expired'")
    known = {key for row in rows for key in (row["object_key"], row["manifest_key"])}
    unknown: list[str] = []
    async for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.s3_bucket, Prefix="instances/"
    ):
        unknown += [
            item["Key"]
            for item in page.get("Contents", [])
            if item["Key"] not in known and item["LastModified"] < now - GRACE
        ]
    for start in range(0, len(unknown), 1000):
        batch = [{"Key": key} for key in unknown[start : start + 1000]]
        await s3.delete_objects(Bucket=settings.s3_bucket, Delete={"Objects": batch, "Quiet": True})
    aborted = 0
    listing = await s3.list_multipart_uploads(Bucket=settings.s3_bucket, Prefix="instances/")
    for upload in listing.get("Uploads", []):
        if upload["Initiated"] < now - STALE_UPLOAD:
            await s3.abort_multipart_upload(
                Bucket=settings.s3_bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
            aborted += 1
    scratch = await drop_abandoned_scratch(pool, settings)
    return {"objects": len(unknown), "multipart_uploads": aborted, "scratch_databases": scratch}
