"""`bindery scheduler`: check the declared jobs, then claim and fire slots until stopped."""

from __future__ import annotations

import asyncio
import sys

from scheduler.jobs import SCHEDULE, ScheduledJob
from scheduler.loop import run_forever
from workers.db import create_pool
from workers.settings import Settings


def run_scheduler(settings: Settings) -> int:
    for job in SCHEDULE:
        try:
            job.check()
        except ValueError as error:
            print(f"bindery: {error}", file=sys.stderr)
            return 2
    import tasks  # noqa: F401  (declares the actors the schedule names)
    from workers.broker import broker

    def send(job: ScheduledJob) -> None:
        broker.get_actor(job.actor).send(*job.args)

    async def run() -> None:
        pool = await create_pool(settings.database_url, max_size=2, application_name="bindery-scheduler")
        try:
            await run_forever(pool, SCHEDULE, send)
        finally:
            await pool.close()

    asyncio.run(run())
    return 0
