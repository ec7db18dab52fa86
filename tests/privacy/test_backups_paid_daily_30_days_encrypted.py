"""Promise: "Once you have subscribed to the paid offer, a backup is made daily and stored
on independent storage … at a different provider … Only the last 30 days are kept."

The nightly run backs up the instances of paid accounts and no others, every day at
02:00 Paris time; each backup is encrypted before it leaves the worker; expiry keeps
at most 30 days of them.
"""

from __future__ import annotations

import json
import secrets
from datetime import date, timedelta
from typing import Any

import asyncpg
import pyrage

from scheduler.jobs import declared_schedule
from tasks.backups.actors import paid_instances
from tasks.backups.expiry import expire_backups
from tasks.backups.restore import read_identity, restore_backup, verify_backup
from tasks.backups.run import run_backup
from tests.instances import add_instance
from workers.db import connect, drop_database, ensure_database
from workers.resources import Resources
from workers.s3 import s3_client

DAY = date(2026, 11, 25)


async def test_only_the_instances_of_paid_accounts_are_backed_up(
    pool: asyncpg.Pool, database_url: str
) -> None:
    statuses = ["active", "trialing", "past_due", "canceled", "incomplete", "unpaid", None]
    instances = {}
    for status in statuses:
        instance_id = await add_instance(pool, database_url, f"shop-{status}")
        if status is not None:
            await pool.execute(
                """INSERT INTO subscriptions (id, account_id, customer_id, status, updated_at)
                   SELECT $1, account_id, $2, $3, now() FROM instances WHERE id = $4""",
                f"sub_{secrets.token_hex(6)}",
                f"cus_{secrets.token_hex(6)}",
                status,
                instance_id,
            )
        instances[status] = instance_id
    chosen = set(await paid_instances(pool)) & set(instances.values())
    assert chosen == {instances["active"], instances["trialing"], instances["past_due"]}


def test_the_nightly_run_is_daily_at_two_in_paris() -> None:
    nightly = [job for job in declared_schedule() if job.actor == "backups.run_nightly"]
    assert [(job.cron, job.timezone) for job in nightly] == [("0 2 * * *", "Europe/Paris")]


async def test_a_backup_is_streamed_encrypted_with_a_manifest_and_restores(
    worker_resources: Resources, instance: tuple[int, str], database_url: str, s3: Any
) -> None:
    pool, settings = worker_resources.pool, worker_resources.settings
    instance_id = instance[0]
    outcome = await run_backup(pool, settings, s3, instance_id, DAY)
    assert outcome["state"] == "complete" and outcome["created"]
    again = await run_backup(pool, settings, s3, instance_id, DAY)  # the same day twice: one backup
    assert again == {**outcome, "created": False}
    assert await pool.fetchval("SELECT count(*) FROM backups WHERE instance_id = $1", instance_id) == 1

    row = await pool.fetchrow("SELECT * FROM backups WHERE id = $1::uuid", outcome["backup_id"])
    assert row["object_key"].startswith(f"instances/{instance_id}/2026-11-25/")
    async with s3_client(settings) as client:
        stored = await (await client.get_object(Bucket=settings.s3_bucket, Key=row["object_key"]))[
            "Body"
        ].read()
        sealed = await (await client.get_object(Bucket=settings.s3_bucket, Key=row["manifest_key"]))[
            "Body"
        ].read()
    identity = pyrage.x25519.Identity.from_str(read_identity(settings.backup_identity_file))
    manifest = json.loads(pyrage.decrypt(sealed, [identity]))
    assert stored.startswith(b"age-encryption.org/v1") and sealed.startswith(b"age-encryption.org/v1")
    row_7 = b"8f14e45fceea167a5a36dedd4bea2543"  # md5('7'), a value of the orders table
    assert b"PGDMP" not in stored and b"orders" not in stored and row_7 not in stored
    assert manifest["sha256"] == row["sha256"] and manifest["object_bytes"] == len(stored)
    assert manifest["recipients"] == settings.backup_recipients and manifest["postgresql_version"]

    verified = await verify_backup(pool, settings, s3, row["id"])
    assert verified["entries"] > 2
    assert await pool.fetchval("SELECT state FROM backups WHERE id = $1", row["id"]) == "verified"

    target = database_url.rsplit("/", 1)[0] + f"/backup_dst_{secrets.token_hex(4)}"
    await ensure_database(target)
    try:
        await restore_backup(pool, settings, s3, row["id"], target)
        conn = await connect(target)
        counts = (
            await conn.fetchval("SELECT count(*) FROM orders"),
            await conn.fetchval("SELECT count(*) FROM customers"),
        )
        await conn.close()
        assert counts == (20000, 300)
    finally:
        await drop_database(target)

    forced = await run_backup(pool, settings, s3, instance_id, DAY, force=True)
    assert forced["created"] and forced["backup_id"] != outcome["backup_id"]


async def test_over_45_days_never_more_than_30_backups_none_older_than_30_days(
    worker_resources: Resources, instance: tuple[int, str], s3: Any
) -> None:
    pool, settings = worker_resources.pool, worker_resources.settings
    instance_id = instance[0]
    first = date(2026, 1, 1)
    async with s3_client(settings) as client:
        for n in range(45):  # an injected clock: day after day, the nightly run then the expiry
            today = first + timedelta(days=n)
            assert (await run_backup(pool, settings, s3, instance_id, today))["state"] == "complete"
            await expire_backups(pool, settings, client, today)
            kept = await pool.fetch(
                "SELECT day FROM backups WHERE instance_id = $1 AND state <> 'expired'", instance_id
            )
            assert len(kept) == min(n + 1, 30)
            assert min(row["day"] for row in kept) > today - timedelta(days=30)
        listing = await client.list_objects_v2(Bucket=settings.s3_bucket, Prefix=f"instances/{instance_id}/")
        assert await expire_backups(pool, settings, client, today) == 0  # idempotent
    assert listing["KeyCount"] == 2 * 30  # an object and a manifest per kept backup
