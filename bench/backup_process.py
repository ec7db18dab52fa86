"""One instance's backup in a process of its own, as a worker runs it: the upload, then
the read-back, each timed, with the process's peak RSS (VmHWM) after each. JSON on stdout.

Usage: python -m bench.backup_process INSTANCE_ID DAY
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import date

from tasks.backups.restore import verify_backup
from tasks.backups.run import run_backup
from workers.db import create_pool
from workers.s3 import s3_client
from workers.settings import load_settings


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))


async def main(instance_id: int, day: date) -> dict[str, float]:
    settings = load_settings()
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        async with s3_client(settings) as client:
            started = time.perf_counter()
            outcome = await run_backup(pool, settings, client, instance_id, day)
            uploaded = time.perf_counter()
            upload_rss = peak_rss_bytes()
            await verify_backup(pool, settings, client, uuid.UUID(outcome["backup_id"]))
            verified = time.perf_counter()
    finally:
        await pool.close()
    return {
        "upload_seconds": uploaded - started,
        "verify_seconds": verified - uploaded,
        "upload_peak_rss": upload_rss,
        "peak_rss": peak_rss_bytes(),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(int(sys.argv[1]), date.fromisoformat(sys.argv[2])))))
