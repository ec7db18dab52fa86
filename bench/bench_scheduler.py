"""Firing lag (slot → enqueued) with three schedulers and 1,000 one-minute jobs, and each
scheduler's CPU time; against one bare process that, at the same minute boundaries,
inserts 1,000 rows in one statement (the least a claim can cost)."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import redis

from bench.common import Result, bench_env, process, scratch_database
from workers.db import connect

SCHEDULERS = 3
BOUNDARIES = 2


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _bare_claims(database_url: str, boundaries: list[datetime]) -> None:
    conn = await connect(database_url)
    try:
        for boundary in boundaries:
            await asyncio.sleep(max(0.0, (boundary - datetime.now(UTC)).total_seconds()))
            await conn.execute(
                """
                INSERT INTO schedule_runs (job, slot, enqueued_at)
                SELECT 'bare-' || i, $1, clock_timestamp() FROM generate_series(1, 1000) AS i
                """,
                boundary,
            )
    finally:
        await conn.close()


async def _lags(conn: asyncpg.Connection, pattern: str) -> list[float]:
    rows = await conn.fetch(
        "SELECT extract(epoch FROM enqueued_at - slot) AS lag FROM schedule_runs WHERE job LIKE $1", pattern
    )
    return sorted(float(row["lag"]) for row in rows if row["lag"] is not None)


def _p(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def run() -> list[Result]:
    with scratch_database() as database_url:
        env = bench_env(database_url)
        redis.Redis.from_url(env["BROKER_URL"]).flushdb()
        now = datetime.now(UTC)
        first = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        if (first - now).total_seconds() < 10:
            first += timedelta(minutes=1)  # give the schedulers time to start before the first slot
        boundaries = [first + timedelta(minutes=i) for i in range(BOUNDARIES)]
        argv = [sys.executable, "-m", "bench.scheduler_process", database_url]
        with (
            process(argv, env, "scheduler-0.log") as s0,
            process(argv, env, "scheduler-1.log") as s1,
            process(argv, env, "scheduler-2.log") as s2,
        ):
            pids = [s0.pid, s1.pid, s2.pid]
            time.sleep(3)
            cpu_before = [_cpu_seconds(pid) for pid in pids]
            wall_before = time.monotonic()
            asyncio.run(_bare_claims(database_url, boundaries))
            time.sleep(5)  # let the schedulers finish the last boundary
            cpu = [_cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
            minutes = (time.monotonic() - wall_before) / 60

        async def collect() -> tuple[list[float], list[float], int]:
            conn = await connect(database_url)
            try:
                fired = await conn.fetchval("SELECT count(*) FROM schedule_runs WHERE job LIKE 'bench-%'")
                return await _lags(conn, "bench-%"), await _lags(conn, "bare-%"), fired
            finally:
                await conn.close()

        ours, bare, fired = asyncio.run(collect())
        redis.Redis.from_url(env["BROKER_URL"]).flushdb()
    expected = 1000 * BOUNDARIES
    if fired < expected:
        raise RuntimeError(f"only {fired} of {expected} slots fired")
    return [
        Result(
            f"scheduler: fire lag p50 ({SCHEDULERS}×, 1000 jobs)",
            _p(ours, 0.5) * 1000,
            _p(bare, 0.5) * 1000,
            "ms",
            "baseline: one bare INSERT of 1000 rows",
        ),
        Result(
            "scheduler: fire lag p99", _p(ours, 0.99) * 1000, _p(bare, 0.99) * 1000, "ms", "goal ≤ 1000 ms"
        ),
        Result(
            "scheduler: CPU s per scheduler per minute",
            statistics.mean(cpu) / minutes,
            float("nan"),
            "s",
            f"max {max(cpu) / minutes:.2f}",
        ),
    ]
