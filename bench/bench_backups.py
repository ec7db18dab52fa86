"""Backups end to end to a local SeaweedFS.

1. One large instance database (`BENCH_BACKUP_MB`, default 1,024 MB as PostgreSQL counts
   it), in `BENCH_BACKUP_ROUNDS` (default 3) alternating rounds of: the baseline
   `pg_dump -Fc -Z0 | zstd -1 > /dev/null`; the same pipeline with its parts thrown away
   (where the time goes before S3); bindery's backup (pg_dump -Fc -Z0 → zstd → age → S3
   multipart) in MB/s of database size, with the CPU the local S3 server spent meanwhile;
   the read-back (download, sha256, decrypt, `pg_restore --list`) timed apart; the
   backup process's peak RSS. Medians of the rounds.
2. A nightly run of `BENCH_BACKUP_INSTANCES` (default 50) small instances through
   `bindery worker` (1 process × 2 threads, BACKUP_CONCURRENCY 2): wall time from the
   nightly message to the last verified backup, against the same instances dumped one
   after another by `pg_dump | zstd > /dev/null`, and the overhead per instance.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta

import asyncpg

from bench.common import BINDERY, OUT, Result, bench_env, process, scratch_database, wait_until
from bench.s3 import S3Server, s3_server
from tasks.backups.pipeline import part_size_for, stream_backup
from workers.db import drop_database, ensure_database
from workers.settings import load_settings

LARGE_MB = int(os.environ.get("BENCH_BACKUP_MB", "1024"))
ROUNDS = int(os.environ.get("BENCH_BACKUP_ROUNDS", "3"))
INSTANCES = int(os.environ.get("BENCH_BACKUP_INSTANCES", "50"))
ROWS_PER_MB = 9_000  # measured: a row of the table below takes about 115 bytes on disk
DAY = date(2026, 11, 25)


@contextmanager
def source_database(rows: int) -> Iterator[str]:
    url = f"postgresql://postgres@127.0.0.1:5432/bindery_bench_src_{secrets.token_hex(4)}"

    async def create() -> None:
        await ensure_database(url)
        conn = await asyncpg.connect(url)
        await conn.execute(
            "CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS a, md5((g + 1)::text) AS b,"
            " now() - g * interval '1 second' AS at FROM generate_series(1, $1::int) g",
            rows,
        )
        await conn.close()

    asyncio.run(create())
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))


async def _add_instances(catalog_url: str, sources: list[str], paid: bool) -> list[int]:
    conn = await asyncpg.connect(catalog_url)
    try:
        ids = []
        for n, source in enumerate(sources):
            account_id = await conn.fetchval(
                "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id",
                f"bench-{n}-{secrets.token_hex(3)}@example.com",
            )
            if paid:
                await conn.execute(
                    "INSERT INTO subscriptions (id, customer_id, account_id, status)"
                    " VALUES ($1, $2, $3, 'active')",
                    f"sub_bench{account_id}",
                    f"cus_bench{account_id}",
                    account_id,
                )
            ids.append(
                await conn.fetchval(
                    "INSERT INTO instances (account_id, name, database_url)"
                    " VALUES ($1, 'bench', $2) RETURNING id",
                    account_id,
                    source,
                )
            )
        return ids
    finally:
        await conn.close()


def _size(url: str) -> int:
    async def size() -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval("SELECT pg_database_size(current_database())"))
        finally:
            await conn.close()

    return asyncio.run(size())


def _dump_to_null(url: str) -> float:
    started = time.perf_counter()
    dump = subprocess.Popen(["pg_dump", "-Fc", "-Z0", "--dbname", url], stdout=subprocess.PIPE)
    compress = subprocess.run(["zstd", "-1", "-q"], stdin=dump.stdout, stdout=subprocess.DEVNULL, check=False)
    assert dump.stdout is not None
    dump.stdout.close()
    if dump.wait() != 0 or compress.returncode != 0:
        raise RuntimeError("the baseline pg_dump | zstd failed")
    return time.perf_counter() - started


def _discarding_pipeline(url: str, size: int) -> float:
    """The same pipeline (pg_dump, zstd, age, sha256, parts) with every part thrown away:
    what the backup costs before any byte reaches S3."""
    recipients = load_settings().backup_recipients
    started = time.perf_counter()
    stream_backup(url, recipients, part_size_for(size), lambda _number, part, _size: part.close())
    return time.perf_counter() - started


def _backup_round(catalog_url: str, instance_id: int, day: date, s3: S3Server) -> dict[str, float]:
    cpu_before = s3.cpu_seconds()
    done = subprocess.run(
        [sys.executable, "-m", "bench.backup_process", str(instance_id), day.isoformat()],
        env=bench_env(catalog_url),
        check=True,
        capture_output=True,
        text=True,
    )
    return {**json.loads(done.stdout), "s3_cpu_seconds": s3.cpu_seconds() - cpu_before}


def _large(catalog_url: str, s3: S3Server) -> list[Result]:
    """ROUNDS alternating rounds (baseline, discarding pipeline, backup); medians of each."""
    rounds: list[dict[str, float]] = []
    with source_database(LARGE_MB * ROWS_PER_MB) as source:
        size = _size(source)
        [instance_id] = asyncio.run(_add_instances(catalog_url, [source], paid=False))
        for n in range(ROUNDS):
            baseline = _dump_to_null(source)
            discarding = _discarding_pipeline(source, size)
            backup = _backup_round(catalog_url, instance_id, DAY + timedelta(days=n), s3)
            rounds.append({"baseline": baseline, "discarding": discarding, **backup})
            print(f"  round {n + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in rounds[-1].items()), flush=True)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    megabytes = size / 1e6
    ratios = ", ".join(f"{r['baseline'] / r['upload_seconds']:.2f}" for r in rounds)
    return [
        Result(
            f"backup of a {megabytes:,.0f} MB database",
            megabytes / median("upload_seconds"),
            megabytes / median("baseline"),
            "MB/s of database size",
            f"baseline pg_dump -Fc -Z0 | zstd -1 > /dev/null; medians of {ROUNDS} rounds (ratios {ratios})",
        ),
        Result(
            "  the same pipeline, parts discarded (no S3)",
            megabytes / median("discarding"),
            megabytes / median("baseline"),
            "MB/s of database size",
            "what the backup costs before the upload",
        ),
        Result(
            "  CPU the local S3 server spends on the upload and read-back",
            median("s3_cpu_seconds"),
            median("baseline"),
            "s",
            "baseline: the baseline's wall time (2 cores shared by everything)",
        ),
        Result(
            "  its read-back (verify)",
            megabytes / median("verify_seconds"),
            megabytes / median("baseline"),
            "MB/s of database size",
            "download, sha256, decrypt, pg_restore --list",
        ),
        Result(
            "  backup process peak RSS",
            max(r["peak_rss"] for r in rounds) / 1e6,
            150,
            "MB",
            "baseline: the 150 MB bound",
        ),
    ]


def _nightly(catalog_url: str) -> list[Result]:
    from tasks.backups.actors import run_nightly  # sent from here, on the benchmark's broker

    with ExitStack() as stack:
        sources = [stack.enter_context(source_database(2_000)) for _ in range(INSTANCES)]
        instance_ids = asyncio.run(_add_instances(catalog_url, sources, paid=True))
        baseline = sum(_dump_to_null(source) for source in sources)
        env = bench_env(catalog_url, BACKUP_CONCURRENCY="2")
        argv = [BINDERY, "worker", "--processes", "1", "--threads", "2", "--queues", "backups", "default"]
        with process(argv, env, "backups-worker.log"):
            wait_until(
                lambda: "Worker process is ready" in (OUT / "backups-worker.log").read_text(), 30, "worker"
            )
            started = time.perf_counter()
            run_nightly.send(f"{DAY.isoformat()}T02:00:00+01:00")
            wait_until(
                lambda: _verified(catalog_url, instance_ids) == len(instance_ids), 1800, "nightly backups"
            )
            wall = time.perf_counter() - started
    return [
        Result(
            f"nightly run of {INSTANCES} small instances",
            wall,
            baseline,
            "s wall",
            f"baseline: each dumped to /dev/null in turn; {(wall - baseline) / INSTANCES:.2f} s more each",
        )
    ]


def _verified(catalog_url: str, instance_ids: list[int]) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(catalog_url)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM backups"
                    " WHERE instance_id = ANY($1::bigint[]) AND state = 'verified'",
                    instance_ids,
                )
            )
        finally:
            await conn.close()

    return asyncio.run(count())


def run() -> list[Result]:
    with scratch_database() as catalog_url, s3_server("backups") as s3:
        return _large(catalog_url, s3) + _nightly(catalog_url)
