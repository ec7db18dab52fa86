"""Promise: backups are "stored on independent storage … at a different provider": that
provider holds ciphertext only, the database passwords never appear in a process's
arguments, and a crash leaves no customer data in clear on our side either.

Every object bindery writes to the bucket (the dump and its manifest) is age ciphertext;
pg_dump and pg_restore get their password through the environment; the read-back pipes
the dump into pg_restore, and a restore test's scratch database left by a killed run is
dropped by the sweeper.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tasks.backups.nightly_restore import SCRATCH_PREFIX, drop_abandoned_scratch
from tasks.backups.restore import restore_backup
from tasks.backups.run import back_up
from tasks.backups.sweeper import sweep
from tests.instances import add_instance
from tests.processes import eventually
from workers.db import drop_database, ensure_database
from workers.resources import Resources

DAY = date(2026, 11, 26)
ROW_VALUES = ("Dupont-Lefebvre-7431", "cardiologie-ward-95")  # row values found nowhere
TABLES = ("patients_vitals", "salaries_staff")
# The cluster trusts local connections: any password is accepted, and is passed on as is.
PASSWORD = "Pg-" + secrets.token_hex(8)


def _with_password(url: str, name: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"postgres:{PASSWORD}@{host}", path="/" + name))


@pytest.fixture
async def patients(worker_resources: Resources, database_url: str) -> AsyncIterator[tuple[int, str]]:
    """An instance whose tables and rows are easy to spot; reached with a password."""
    url = _with_password(database_url, f"backup_src_{secrets.token_hex(4)}")
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    await conn.execute(
        f"CREATE TABLE {TABLES[0]} AS SELECT g AS id, md5(g::text) || '{ROW_VALUES[0]}' AS note"
        " FROM generate_series(1, 300000) g;"
        f"CREATE TABLE {TABLES[1]} AS SELECT g AS id, '{ROW_VALUES[1]}' AS ward"
        " FROM generate_series(1, 50) g;"
    )
    await conn.close()
    yield await add_instance(worker_resources.pool, url, "clinic"), url
    await drop_database(url)


@dataclass
class ArgvWatch:
    """Every process command line seen while it ran: those naming pg tools, those with the password."""

    tools: set[str] = field(default_factory=set)
    leaked: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                command = Path(argv[0].decode(errors="replace")).name
                if command in ("pg_dump", "pg_restore"):
                    self.tools.add(command)
                if any(PASSWORD.encode() in arg for arg in argv):
                    self.leaked.append(command)


@contextmanager
def watching_argv() -> Iterator[ArgvWatch]:
    watch = ArgvWatch()
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        watch.stop.set()
        thread.join()


async def test_the_bucket_holds_ciphertext_only_and_no_argv_holds_the_password(
    worker_resources: Resources, patients: tuple[int, str], database_url: str, s3: Any
) -> None:
    pool, settings = worker_resources.pool, worker_resources.settings
    instance_id = patients[0]
    target = _with_password(database_url, f"backup_dst_{secrets.token_hex(4)}")
    await ensure_database(target)
    try:
        with watching_argv() as watch:
            outcome = await back_up(pool, settings, s3, instance_id, DAY)
            await restore_backup(pool, settings, s3, outcome["backup_id"], target)
    finally:
        await drop_database(target)
    assert outcome["state"] == "verified"
    assert watch.tools == {"pg_dump", "pg_restore"}, "the watch saw the tools run: it proves something"
    assert watch.leaked == [], f"the password was in the arguments of {watch.leaked}"

    # Every object this backup wrote (other tests share the bucket with objects of their own).
    prefix = f"instances/{instance_id}/"
    listing = await s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=prefix)
    keys = [item["Key"] for item in listing.get("Contents", [])]
    assert len(keys) == 2, "the dump and its manifest"
    for key in keys:
        body = await (await s3.get_object(Bucket=settings.s3_bucket, Key=key))["Body"].read()
        assert body.startswith(b"age-encryption.org/v1"), f"{key} is not age ciphertext"
        for needle in (b"PGDMP", *(name.encode() for name in TABLES + ROW_VALUES)):
            assert needle not in body, f"{key} holds {needle!r}"


RESTORE_TEST = """
import asyncio, sys, uuid
from tasks.backups.nightly_restore import restore_and_compare
from workers.db import create_pool
from workers.s3 import s3_client
from workers.settings import load_settings

async def main():
    settings = load_settings()
    pool = await create_pool(settings.database_url, max_size=4)
    async with s3_client(settings) as client:
        await restore_and_compare(pool, settings, client, uuid.UUID(sys.argv[1]))

asyncio.run(main())
"""


async def _scratch_databases(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", SCRATCH_PREFIX)
    return [row["datname"] for row in rows]


async def _restoring(pool: asyncpg.Pool) -> bool:
    """pg_restore is writing into a scratch database."""
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE starts_with(datname, $1) AND application_name = 'pg_restore'",
            SCRATCH_PREFIX,
        )
    )


async def test_a_restore_test_killed_mid_way_leaves_nothing_in_clear(
    worker_resources: Resources, patients: tuple[int, str], s3: Any, tmp_path: Path
) -> None:
    pool, settings = worker_resources.pool, worker_resources.settings
    backup = await back_up(pool, settings, s3, patients[0], DAY)
    assert await _scratch_databases(pool) == []
    started = time.time()
    env = {**os.environ, "STRIPE_API_BASE": settings.stripe_api_base or ""}
    runner = subprocess.Popen(
        [sys.executable, "-c", RESTORE_TEST, backup["backup_id"]], env=env, start_new_session=True
    )
    try:
        await eventually(lambda: _restoring(pool), 60, "pg_restore writing into the scratch database")
        left = await _scratch_databases(pool)
        assert len(left) == 1
        # A live run's scratch database is not the sweeper's to drop.
        assert await drop_abandoned_scratch(pool, settings) == 0
        os.killpg(runner.pid, signal.SIGKILL)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
    assert await _scratch_databases(pool) == left, "the killed run could not drop it"

    # Nothing it wrote on our disk holds the data in clear.
    for path in Path(tempfile.gettempdir()).rglob("*"):
        try:
            if not path.is_file() or path.stat().st_mtime < started or path.stat().st_size > 1 << 30:
                continue
            content = path.read_bytes()
        except OSError:
            continue
        assert b"PGDMP" not in content and ROW_VALUES[1].encode() not in content, f"{path} holds the dump"

    swept = await sweep(pool, settings, s3)
    assert swept["scratch_databases"] == 1
    assert await _scratch_databases(pool) == []
