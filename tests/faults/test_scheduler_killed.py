"""Fault: one of three schedulers killed with SIGKILL half-way.

Three real `bindery scheduler` processes and a real worker: every slot runs exactly once,
even when one scheduler is killed with SIGKILL half-way."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from tests.processes import bindery, bindery_env, wait_until
from workers.db import connect
from workers.devstack.servers import free_port

EVERY_SECOND = {"system.scheduled_ping": {"enabled": True, "cron": "* * * * * *", "catchup": "all"}}
RUN_FOR = 32.0


async def _runs(database_url: str, since: datetime) -> tuple[list[datetime], int, list[str]]:
    conn = await connect(database_url)
    try:
        slots = [
            row["slot"]
            for row in await conn.fetch(
                "SELECT slot FROM schedule_runs"
                " WHERE job = 'system.scheduled_ping' AND slot >= $1 ORDER BY slot",
                since,
            )
        ]
        unstarted = await conn.fetchval(
            """SELECT count(*) FROM schedule_runs
                WHERE job = 'system.scheduled_ping' AND slot >= $1 AND started_at IS NULL""",
            since,
        )
        recorded = [
            row["subject_id"]
            for row in await conn.fetch(
                "SELECT subject_id FROM audit_log WHERE action = 'system.scheduled_ping' AND at >= $1", since
            )
        ]
        return slots, unstarted, recorded
    finally:
        await conn.close()


@pytest.mark.slow
def test_three_schedulers_fire_every_slot_exactly_once_despite_a_kill(
    database_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    metrics_port = free_port()
    env = bindery_env(
        SCHEDULER_OVERRIDES=json.dumps(EVERY_SECOND),
        SCHEDULER_SWEEP_AFTER_SECONDS="2",
        SCHEDULER_METRICS_PORT="0",
    )
    since = datetime.now(UTC)
    with ExitStack() as stack:
        stack.enter_context(
            bindery("worker", "--processes", "1", "--threads", "4", log=tmp_path / "worker.log", env=env)
        )
        schedulers = [
            stack.enter_context(
                bindery(
                    "scheduler",
                    log=tmp_path / f"scheduler-{i}.log",
                    env={**env, "SCHEDULER_METRICS_PORT": str(metrics_port)} if i == 2 else env,
                )
            )
            for i in range(3)
        ]
        # The run's clock starts with the first slot fired, not with the processes: how
        # long they take to start is the machine's, not the schedulers'.
        wait_until(lambda: asyncio.run(_runs(database_url, since))[0], 60, "the first slot fired", 0.2)
        started = time.monotonic()
        wait_until(lambda: time.monotonic() - started > RUN_FOR / 2, RUN_FOR, "half the run")
        os.killpg(schedulers[0].pid, signal.SIGKILL)
        wait_until(lambda: time.monotonic() - started > RUN_FOR, RUN_FOR, "the rest of the run")
        metrics = call_metrics(metrics_port)
        for scheduler in schedulers[1:]:
            os.killpg(scheduler.pid, signal.SIGTERM)
            scheduler.wait(10)
        # Claimed by the killed scheduler but never sent: the sweeper of the survivors
        # sent them; wait for the worker to start every claimed run.
        wait_until(lambda: asyncio.run(_runs(database_url, since))[1] == 0, 30, "every claimed run to start")
        wait_until(
            lambda: (
                len(asyncio.run(_runs(database_url, since))[2])
                >= len(asyncio.run(_runs(database_url, since))[0])
            ),
            30,
            "every run to be recorded",
        )
    slots, _, recorded = asyncio.run(_runs(database_url, since))
    assert len(slots) >= RUN_FOR - 3
    seconds = [int(slot.timestamp()) for slot in slots]
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds))), "a slot is missing"
    runs = Counter(recorded)
    assert set(runs) == {slot.isoformat() for slot in slots}
    assert max(runs.values()) == 1, [slot for slot, count in runs.items() if count > 1]
    assert "bindery_scheduler_slots_fired_total" in metrics


def call_metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text
