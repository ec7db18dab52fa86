"""`bindery scheduler [list | run-now JOB]`: check the schedule, then run it or report on it."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta

from scheduler.jobs import ScheduledJob, ScheduleError, declared_schedule, effective_schedule
from scheduler.loop import Scheduler, Send, utc_now
from workers.db import connect, create_pool
from workers.settings import Settings
from workers.text_tables import print_table


def load_schedule(settings: Settings) -> list[ScheduledJob] | None:
    """The checked schedule, or None after printing the one line that names the bad job."""
    try:
        return effective_schedule(declared_schedule(), settings.scheduler_overrides)
    except ScheduleError as error:
        print(f"bindery: {error}", file=sys.stderr)
        return None


def _broker_sender() -> Send:
    from scheduler.messages import sender
    from workers.broker import broker
    from workers.domains import declare_actors

    declare_actors()

    return sender(broker)


def run_scheduler(settings: Settings) -> int:
    jobs = load_schedule(settings)
    if jobs is None:
        return 2
    send = _broker_sender()
    if settings.scheduler_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.scheduler_metrics_port, addr="127.0.0.1")

    async def run() -> None:
        pool = await create_pool(settings.database_url, max_size=2, application_name="bindery-scheduler")
        try:
            scheduler = Scheduler(
                pool,
                jobs,
                send,
                sweep_after=timedelta(seconds=settings.scheduler_sweep_after_seconds),
            )
            await scheduler.run_forever()
        finally:
            await pool.close()

    asyncio.run(run())
    return 0


def list_jobs(settings: Settings, as_json: bool) -> int:
    from scheduler.admin import job_table

    jobs = load_schedule(settings)
    if jobs is None:
        return 2

    async def run() -> list[dict[str, object]]:
        conn = await connect(settings.database_url)
        try:
            return await job_table(conn, jobs, utc_now())
        finally:
            await conn.close()

    table = asyncio.run(run())
    if as_json:
        print(json.dumps(table, indent=2))
        return 0
    columns = (
        "job",
        "enabled",
        "cron",
        "timezone",
        "next_run_utc",
        "next_run_local",
        "last_slot_utc",
        "last_lag_seconds",
    )
    print_table(table, columns)
    return 0


def run_job_now(settings: Settings, name: str) -> int:
    from scheduler.admin import run_now

    jobs = load_schedule(settings)
    if jobs is None:
        return 2
    job = next((job for job in jobs if job.name == name), None)
    if job is None:
        print(f"bindery: no scheduled job named {name!r} (see `bindery scheduler list`)", file=sys.stderr)
        return 1
    send = _broker_sender()

    async def run() -> None:
        pool = await create_pool(settings.database_url, max_size=1, application_name="bindery-cli")
        try:
            slot = await run_now(pool, job, send, utc_now())
            print(f"enqueued {job.name} (run recorded at {slot.isoformat()})")
        finally:
            await pool.close()

    asyncio.run(run())
    return 0
