"""Fault: the backups worker killed mid-upload; the S3 server stopped mid-upload.

Backups against real failures: a worker killed mid-upload, the S3 server stopped
mid-upload, wrong credentials; and the worker's memory while a large database streams."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tasks.backups.run import back_up, run_backup
from tests.instances import add_instance
from tests.processes import bindery, bindery_env, equals, eventually
from workers.db import drop_database, ensure_database
from workers.resources import Resources
from workers.s3 import s3_client
from workers.settings import Settings

DAY = date(2026, 11, 20)
BIG_ROWS = 2_500_000  # about 190 MB of dump: more than the worker may hold in memory


@pytest.fixture(scope="module")
def big_source(database_url: str) -> Iterator[str]:
    """One large source database; each test's instance points at it (backups only read it)."""
    url = database_url.rsplit("/", 1)[0] + f"/backup_big_{secrets.token_hex(4)}"

    async def create() -> None:
        await ensure_database(url)
        conn = await asyncpg.connect(url)
        await conn.execute(
            "CREATE TABLE big AS SELECT g, md5(g::text) AS a, md5((g + 1)::text) AS b"
            f" FROM generate_series(1, {BIG_ROWS}) g"
        )
        await conn.close()

    asyncio.run(create())
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture
async def instance_id(worker_resources: Resources, big_source: str) -> int:
    return await add_instance(worker_resources.pool, big_source, "big")


async def _uploading(pool: asyncpg.Pool, s3: Any, settings: Settings, instance_id: int) -> str | None:
    """The upload id once the backup has sent its first part."""
    upload_id = await pool.fetchval(
        "SELECT upload_id FROM backups WHERE instance_id = $1 AND state = 'running'", instance_id
    )
    if upload_id is None:
        return None
    key = await pool.fetchval("SELECT object_key FROM backups WHERE instance_id = $1", instance_id)
    try:
        parts = await s3.list_parts(Bucket=settings.s3_bucket, Key=key, UploadId=upload_id)
    except Exception:
        return None
    return str(upload_id) if parts.get("Parts") else None


async def _uploads(s3: Any, settings: Settings, instance_id: int) -> set[str]:
    listing = await s3.list_multipart_uploads(Bucket=settings.s3_bucket, Prefix=f"instances/{instance_id}/")
    return {upload["UploadId"] for upload in listing.get("Uploads", [])}


async def test_a_worker_killed_mid_upload_leaves_the_backup_to_the_next_attempt(
    worker_resources: Resources, instance_id: int, s3: Any, tmp_path: Path
) -> None:
    from tasks.backups.actors import run

    pool, settings = worker_resources.pool, worker_resources.settings

    async def state() -> str:
        return str(await pool.fetchval("SELECT state FROM backups WHERE instance_id = $1", instance_id))

    worker_args = ("worker", "--queues", "backups", "--processes", "1", "--threads", "1")
    with bindery(*worker_args, log=tmp_path / "worker-1.log") as worker:
        run.send(instance_id, DAY.isoformat())
        orphan = await eventually(lambda: _uploading(pool, s3, settings, instance_id), 60, "a part uploaded")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    assert await state() == "running" and orphan in await _uploads(s3, settings, instance_id)

    # Two minutes later the dead worker's lease has run out (moved, not waited for).
    await pool.execute(
        "UPDATE backups SET lease_until = now() - interval '1 second' WHERE instance_id = $1", instance_id
    )
    with bindery(*worker_args, log=tmp_path / "worker-2.log"):
        run.send(instance_id, DAY.isoformat())  # the next attempt (a retry, or the next night's run)
        await eventually(lambda: equals(state(), "verified"), 120, "the next attempt to finish")
    assert orphan not in await _uploads(s3, settings, instance_id)
    rows = await pool.fetch("SELECT upload_id, parts FROM backups WHERE instance_id = $1", instance_id)
    assert len(rows) == 1 and rows[0]["upload_id"] != orphan and rows[0]["parts"] >= 1


async def test_the_s3_server_stopped_mid_upload_fails_the_backup_and_a_retry_completes_it(
    worker_resources: Resources, instance_id: int, tmp_path: Path
) -> None:
    from workers.devstack import seaweedfs
    from workers.devstack.servers import free_port_block, running, stop

    pool = worker_resources.pool
    port = free_port_block(seaweedfs.PORT_OFFSETS)
    settings = worker_resources.settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{port}"})
    command = seaweedfs.server_command(tmp_path / "data", tmp_path / "identities.json", port, settings)

    async def bucket_ready() -> bool:
        return await seaweedfs.bucket_accepts_writes(settings)

    with running("seaweedfs", command, port, tmp_path / "weed-1.log", timeout=60) as server:
        await eventually(bucket_ready, 60, "the private S3 server")
        async with s3_client(settings) as client:
            backup = asyncio.create_task(run_backup(pool, settings, client, instance_id, DAY))
            orphan = await eventually(
                lambda: _uploading(pool, client, settings, instance_id), 60, "a part uploaded"
            )
            stop(server)
            with pytest.raises(Exception):  # noqa: B017 - whichever S3 call met the closed port
                await backup
    row = await pool.fetchrow(
        "SELECT state, error, upload_id FROM backups WHERE instance_id = $1", instance_id
    )
    assert row["state"] == "failed" and row["upload_id"] == orphan
    assert row["error"] == "S3: EndpointConnectionError", row["error"]

    with running("seaweedfs", command, port, tmp_path / "weed-2.log", timeout=60):
        await eventually(bucket_ready, 60, "the private S3 server, again")
        async with s3_client(settings) as client:
            outcome = await back_up(pool, settings, client, instance_id, DAY)  # the retry
            assert outcome["state"] == "verified" and not outcome.get("error")
            assert orphan not in await _uploads(client, settings, instance_id)
    assert await pool.fetchval("SELECT count(*) FROM backups WHERE instance_id = $1", instance_id) == 1


async def test_wrong_s3_credentials_are_a_clear_error(
    worker_resources: Resources, instance_id: int, tmp_path: Path
) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    env = bindery_env(AWS_SECRET_ACCESS_KEY=wrong)
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "bindery"),
        *("backup", "run", "--instance", str(instance_id), "--day", DAY.isoformat()),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 1, err
    message = err.decode()
    assert "S3 at http://127.0.0.1:" in message and "SignatureDoesNotMatch" in message, message
    assert wrong not in message and wrong not in out.decode()
    row = await worker_resources.pool.fetchrow(
        "SELECT state, error FROM backups WHERE instance_id = $1", instance_id
    )
    assert row["state"] == "failed" and "SignatureDoesNotMatch" in row["error"]


# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over an exec, so a child of
# a large pytest would report pytest's size.
PEAK_RSS = """
import sys
from workers.cli import main
status = main(sys.argv[1:])
peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("peak_rss_kib", peak, file=sys.stderr)
sys.exit(status)
"""


async def test_the_worker_stays_under_150_mb_while_a_larger_database_streams(
    worker_resources: Resources, instance_id: int
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-c", PEAK_RSS, "backup", "run", "--instance", str(instance_id), "--day", DAY.isoformat()),
        env=bindery_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, err.decode()[-2000:]
    peak_kib = int(err.decode().rsplit("peak_rss_kib", 1)[1].split()[0])
    dump_bytes = await worker_resources.pool.fetchval(
        "SELECT dump_bytes FROM backups WHERE instance_id = $1 AND state = 'verified'", instance_id
    )
    assert dump_bytes > 150e6  # the database is larger than the bound...
    assert peak_kib * 1024 < 150e6, f"peak RSS {peak_kib / 1024:.0f} MiB"  # ...the worker is not
