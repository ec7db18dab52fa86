"""One benchmark scheduler: bindery's Scheduler with 1,000 one-minute jobs whose actor is
the no-op actor, sending to Redis. `python -m bench.scheduler_process DATABASE_URL`."""

from __future__ import annotations

import asyncio
import sys

from bench.noop_worker import broker
from scheduler.jobs import ScheduledJob
from scheduler.loop import Scheduler
from scheduler.messages import sender
from workers.db import create_pool

JOBS = [ScheduledJob(f"bench-{i:04d}", "* * * * *", actor="bench.noop", args=("x",)) for i in range(1000)]


async def main(database_url: str) -> None:
    pool = await create_pool(database_url, max_size=2, application_name="bench-scheduler")
    await Scheduler(pool, JOBS, sender(broker)).run_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
