"""Backups through the real pipeline: pg_dump, zstd, age, SeaweedFS; read back with pg_restore."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tasks.backups.pipeline import BackupFailed, part_size_for
from tasks.backups.restore import verify_backup
from tasks.backups.run import run_backup
from tests.http import answers, call, finished_job
from tests.processes import bindery, eventually, run_bindery, wait_until
from workers.db import database_name
from workers.devstack.servers import free_port
from workers.resources import Resources
from workers.s3 import s3_client

DAY = date(2026, 11, 25)


def test_parts_stay_under_scalewas_limit_whatever_the_size() -> None:
    for size in (0, 10 << 20, 50 << 30, 4 << 40):
        part = part_size_for(size)
        assert part >= 5 << 20 and size * 1.2 / part < 1000


async def test_a_pg_dump_killed_half_way_fails_the_backup_and_leaves_no_upload(
    worker_resources: Resources, instance: tuple[int, str], s3: Any
) -> None:
    pool, settings = worker_resources.pool, worker_resources.settings
    instance_id, source_url = instance
    conn = await asyncpg.connect(source_url)  # large enough to still be dumping when killed
    await conn.execute(
        "CREATE TABLE big AS SELECT g, md5(g::text) AS a, md5((g + 1)::text) AS b"
        " FROM generate_series(1, 1500000) g"
    )
    await conn.close()
    backup = asyncio.create_task(run_backup(pool, settings, s3, instance_id, DAY))

    async def dumping() -> int | None:
        found = subprocess.run(["pgrep", "-f", f"pg_dump .*{database_name(source_url)}"], capture_output=True)
        return int(found.stdout.split()[0]) if found.stdout else None

    pid = await eventually(dumping, 30, "pg_dump to start")
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(BackupFailed, match="pg_dump exited"):
        await backup
    row = await pool.fetchrow("SELECT state, error, sha256 FROM backups WHERE instance_id = $1", instance_id)
    assert (row["state"], row["sha256"]) == ("failed", None) and "pg_dump" in row["error"]
    async with s3_client(settings) as client:
        prefix = f"instances/{instance_id}/"
        listing = await client.list_objects_v2(Bucket=settings.s3_bucket, Prefix=prefix)
        uploads = await client.list_multipart_uploads(Bucket=settings.s3_bucket, Prefix=prefix)
    assert listing.get("KeyCount", 0) == 0 and not uploads.get("Uploads")
    # A later run takes the same row again, and succeeds.
    assert (await run_backup(pool, settings, s3, instance_id, DAY))["state"] == "complete"
    assert await pool.fetchval("SELECT count(*) FROM backups WHERE instance_id = $1", instance_id) == 1


def test_the_cli_refuses_a_bad_day_and_an_unknown_backup(database_url: str, s3_server: str) -> None:
    bad = run_bindery("backup", "run", "--day", "yesterday")
    assert bad.returncode == 2 and "--day" in bad.stderr
    unknown = run_bindery("backup", "verify", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 1 and "unknown backup" in unknown.stderr


async def test_asyncio_is_not_blocked_while_a_backup_streams(
    worker_resources: Resources, instance: tuple[int, str], s3: Any
) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    await run_backup(worker_resources.pool, worker_resources.settings, s3, instance[0], date(2026, 11, 24))
    ticker.cancel()
    assert ticks > 3


async def test_the_restore_test_compares_tables_and_rows_with_the_source_at_dump_time(
    worker_resources: Resources, instance: tuple[int, str], s3: Any
) -> None:
    from tasks.backups.nightly_restore import next_to_restore, restore_and_compare

    pool, settings = worker_resources.pool, worker_resources.settings
    instance_id, source_url = instance
    backup_id = (await run_backup(pool, settings, s3, instance_id, date(2026, 10, 1)))["backup_id"]
    conn = await asyncpg.connect(source_url)
    await conn.execute("INSERT INTO customers SELECT g FROM generate_series(301, 400) g")  # after the dump
    await conn.close()
    counts = await pool.fetchval("SELECT table_counts FROM backups WHERE id = $1::uuid", backup_id)
    assert counts == {'"public"."customers"': 300, '"public"."orders"': 20000}

    assert str(await next_to_restore(pool)) == backup_id
    outcome = await restore_and_compare(pool, settings, s3, uuid.UUID(backup_id))
    assert (outcome["tables"], outcome["rows"]) == (2, 20300)
    row = await pool.fetchrow("SELECT state, restore_tested_at FROM backups WHERE id = $1::uuid", backup_id)
    assert row["state"] == "verified" and row["restore_tested_at"] is not None
    assert await next_to_restore(pool) != uuid.UUID(backup_id)  # not picked twice

    # A catalog that disagrees with what restores fails the test.
    await pool.execute(
        """UPDATE backups SET state = 'complete', table_counts = '{"\\"public\\".\\"orders\\"": 1}'
            WHERE id = $1::uuid""",
        backup_id,
    )
    with pytest.raises(BackupFailed, match="differ from the source"):
        await restore_and_compare(pool, settings, s3, uuid.UUID(backup_id))


async def test_a_paid_instance_without_a_fresh_verified_backup_alerts_the_operators(
    worker_resources: Resources, instance: tuple[int, str], smtp_sink: Path, s3: Any
) -> None:
    from tasks.backups.freshness import check_freshness, stale_instances
    from tests.erasure_scenario import mails_to

    pool, settings = worker_resources.pool, worker_resources.settings
    instance_id = instance[0]
    account_id = await pool.fetchval("SELECT account_id FROM instances WHERE id = $1", instance_id)
    assert instance_id not in await stale_instances(pool)  # not paid: not backed up, not stale
    await pool.execute(
        "INSERT INTO subscriptions (id, customer_id, account_id, status) VALUES ($1, 'cus_x', $2, 'active')",
        f"sub_fresh{instance_id}",
        account_id,
    )
    before = len(mails_to(smtp_sink, settings.ops_email))
    assert instance_id in await check_freshness(pool, settings)
    [alert] = mails_to(smtp_sink, settings.ops_email)[before:]
    assert f"instance {instance_id}" in alert.get_content()

    backup_id = (await run_backup(pool, settings, s3, instance_id, date(2026, 9, 1)))["backup_id"]
    assert instance_id in await stale_instances(pool)  # complete is not enough: verified is
    await verify_backup(pool, settings, s3, uuid.UUID(backup_id))
    assert instance_id not in await stale_instances(pool)


async def test_the_sweeper_removes_what_the_catalog_does_not_know_and_stale_uploads(
    worker_resources: Resources, instance: tuple[int, str], s3: Any
) -> None:
    from datetime import UTC, datetime

    from tasks.backups.sweeper import sweep

    pool, settings = worker_resources.pool, worker_resources.settings
    instance_id = instance[0]
    backup_id = (await run_backup(pool, settings, s3, instance_id, date(2026, 8, 1)))["backup_id"]
    stray = f"instances/{instance_id}/2026-08-01/stray.dump.zst.age"
    async with s3_client(settings) as client:
        await client.put_object(Bucket=settings.s3_bucket, Key=stray, Body=b"left by nobody")
        upload = await client.create_multipart_upload(
            Bucket=settings.s3_bucket, Key=f"instances/{instance_id}/x"
        )
        assert await sweep(pool, settings, client) == {
            "objects": 0,
            "multipart_uploads": 0,
            "scratch_databases": 0,
        }  # too recent
        later = datetime.now(UTC) + timedelta(days=2)
        swept = await sweep(pool, settings, client, now=later)
        listing = await client.list_objects_v2(Bucket=settings.s3_bucket, Prefix=f"instances/{instance_id}/")
        uploads = await client.list_multipart_uploads(
            Bucket=settings.s3_bucket, Prefix=f"instances/{instance_id}/"
        )
    assert swept["objects"] >= 1 and swept["multipart_uploads"] >= 1
    keys = {item["Key"] for item in listing.get("Contents", [])}
    row = await pool.fetchrow("SELECT object_key, manifest_key FROM backups WHERE id = $1::uuid", backup_id)
    assert stray not in keys and {row["object_key"], row["manifest_key"]} <= keys
    assert upload["UploadId"] not in {u["UploadId"] for u in uploads.get("Uploads", [])}


async def test_back_up_reads_each_backup_back_and_holds_the_nightly_run_to_its_slots(
    worker_resources: Resources, instance: tuple[int, str], s3: Any
) -> None:
    from tasks.backups.catalog import NoSlot
    from tasks.backups.run import back_up

    pool, settings = worker_resources.pool, worker_resources.settings
    instance_id = instance[0]
    outcome = await back_up(pool, settings, s3, instance_id, date(2026, 7, 1))
    assert outcome["state"] == "verified" and outcome["created"]
    # A backup left `complete` (its worker died before reading it back) is read back next time.
    await pool.execute("UPDATE backups SET state = 'complete' WHERE id = $1::uuid", outcome["backup_id"])
    again = await back_up(pool, settings, s3, instance_id, date(2026, 7, 1))
    assert again == {**outcome, "created": False}

    # Slots: with one backup running (a live lease) and one slot, the next one waits, and
    # nothing is claimed for it; once the lease is gone, it runs.
    await pool.execute(
        """INSERT INTO backups (id, instance_id, day, object_key, manifest_key, lease_until)
           VALUES ($1, $2, '2026-07-02', 'k', 'm', now() + interval '1 minute')""",
        uuid.uuid4(),
        instance_id,
    )
    with pytest.raises(NoSlot):
        await back_up(pool, settings, s3, instance_id, date(2026, 7, 3), slots=1)
    assert not await pool.fetchval(
        "SELECT count(*) FROM backups WHERE instance_id = $1 AND day = '2026-07-03'", instance_id
    )
    await pool.execute(
        "UPDATE backups SET state = 'failed', lease_until = NULL"
        " WHERE instance_id = $1 AND day = '2026-07-02'",
        instance_id,
    )
    assert (await back_up(pool, settings, s3, instance_id, date(2026, 7, 3), slots=1))["state"] == "verified"


def test_init_bucket_sets_the_lifecycle_backstops_and_can_be_repeated(
    s3_server: str, database_url: str
) -> None:
    first = run_bindery("backup", "init-bucket")
    assert first.returncode == 0, first.stderr
    again = run_bindery("backup", "init-bucket")
    backups, exports = json.loads(again.stdout)
    assert again.returncode == 0 and backups["created"] is False and exports["created"] is False
    assert exports["bucket"] == "bindery-exports"
    rules = {rule["ID"]: rule for rule in backups["rules"]}
    assert rules["bindery-retention-backstop"]["Expiration"] == {"Days": 32}
    assert rules["bindery-retention-backstop"]["Filter"] == {"Prefix": "instances/"}
    assert rules["bindery-abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 1
    }
    # Export archives carry a customer's whole data: gone a week after they are written.
    export_rules = {rule["ID"]: rule for rule in exports["rules"]}
    assert export_rules["bindery-export-expiry"]["Expiration"] == {"Days": 7}
    assert export_rules["bindery-export-expiry"]["Filter"] == {"Prefix": "exports/"}


async def test_list_and_status_show_the_catalog_and_a_nights_run(
    worker_resources: Resources, instance: tuple[int, str], s3: Any
) -> None:
    from tasks.backups.run import back_up

    pool, settings = worker_resources.pool, worker_resources.settings
    instance_id = instance[0]
    day = date(2026, 6, 1)
    outcome = await back_up(pool, settings, s3, instance_id, day)
    account_id = await pool.fetchval("SELECT account_id FROM instances WHERE id = $1", instance_id)
    await pool.execute(
        "INSERT INTO subscriptions (id, customer_id, account_id, status) VALUES ($1, 'cus_x', $2, 'active')",
        f"sub_status{instance_id}",
        account_id,
    )
    unbacked = await pool.fetchval(
        "INSERT INTO instances (account_id, name, database_url) VALUES ($1, 'other', 'postgresql://x/y')"
        " RETURNING id",
        account_id,
    )

    listed = run_bindery("backup", "list", "--instance", str(instance_id), "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["state"], row["day"]) == (outcome["backup_id"], "verified", "2026-06-01")
    assert outcome["backup_id"] in run_bindery("backup", "list", "--instance", str(instance_id)).stdout

    status = run_bindery("backup", "status", "--day", "2026-06-01", "--json")
    assert status.returncode == 0, status.stderr
    night = json.loads(status.stdout)
    assert night["verified"] >= 1 and unbacked in night["missing"] and instance_id not in night["missing"]
    text = run_bindery("backup", "status", "--day", "2026-06-01").stdout
    assert "backups of 2026-06-01:" in text and str(unbacked) in text


def test_the_progress_bar_never_shows_done_before_it_is() -> None:
    from workers.progress import render

    assert render(0, 100).startswith("[" + " " * 30 + "]")
    assert "~ 50%" in render(50, 100)
    assert "~ 99%" in render(150, 100)  # the database's size is only an estimate of the dump's


async def test_parts_larger_than_the_memory_spool_wait_on_disk_and_upload_whole(
    worker_resources: Resources, instance: tuple[int, str], s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.backups import pipeline
    from tasks.backups.run import back_up

    spools: list[Any] = []
    new_spool = pipeline._new_spool

    def recorded() -> Any:
        spools.append(new_spool())
        return spools[-1]

    monkeypatch.setattr(pipeline, "SPOOL_IN_MEMORY", 64 << 10)  # as a part of a 100 GB database would
    monkeypatch.setattr(pipeline, "_new_spool", recorded)
    pool, settings = worker_resources.pool, worker_resources.settings
    outcome = await back_up(pool, settings, s3, instance[0], date(2026, 5, 1))
    assert outcome["state"] == "verified"  # read back whole: sha256, decrypt, pg_restore --list
    assert any(spool._rolled for spool in spools)  # the part went to a file, not to memory
    assert all(spool.closed for spool in spools)


def test_the_job_api_backs_an_instance_up_now_and_refuses_an_unknown_one(
    instance: tuple[int, str], database_url: str, s3_server: str, tmp_path: Path
) -> None:
    token = run_bindery("token", "create", f"backups-{tmp_path.name[-12:]}".lower(), "--scope", "backups")
    headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
    base = f"http://127.0.0.1:{free_port()}"
    with (
        bindery("web", "--port", base.rsplit(":", 1)[1], log=tmp_path / "web.log"),
        bindery("worker", "--queues", "backups", "--processes", "1", log=tmp_path / "worker.log"),
    ):
        wait_until(lambda: answers(f"{base}/healthz"), 20, "bindery web")
        status, _, body = call(
            "POST", f"{base}/jobs/backups.run_now", body={"instance_id": 2**40}, headers=headers
        )
        assert (status, body["error"]) == (404, "not_found")
        status, _, body = call(
            "POST", f"{base}/jobs/backups.run_now", body={"instance_id": instance[0]}, headers=headers
        )
        assert status == 202, body

        job = finished_job(base, body["job_id"], headers, 60, "the backup job")
    assert job["status"] == "done", (tmp_path / "worker.log").read_text()
    # Backed up for today and read back, so the freshness check counts it.
    assert job["result"]["state"] == "verified" and job["result"]["created"] is True
    rows = asyncio.run(_backup_states(database_url, instance[0]))
    assert rows == [("verified", job["result"]["backup_id"])]


async def _backup_states(database_url: str, instance_id: int) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(database_url)
    try:
        found = await conn.fetch("SELECT state, id::text FROM backups WHERE instance_id = $1", instance_id)
        return [(row["state"], row["id"]) for row in found]
    finally:
        await conn.close()
