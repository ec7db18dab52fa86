"""Erase many accounts, each with 2 small instance databases, 30 backup objects per
instance, 200 inbox events and a Stripe subscription paid by card, through `bindery
worker` (2 processes × 8 threads), while Stripe's webhooks flow: the Stripe fake delivers
every event to a `bindery web` (0.5–3 s late, one in ten twice), and deleting each
customer sends `customer.subscription.deleted` and `customer.deleted`, which the inbox
must store as ignored while the erasures run.

Figures: accounts erased per second; backup objects deleted per second by erasure's
`backup_objects` step, against raw batched `DeleteObjects` of the same number of objects
on the same S3 server in the same run, measured twice: the step alone (run for as many
accounts at a time as the workers have threads, over a copy of the accounts' objects),
and inside the full run (one step's rate, while the other steps of 15 other erasures
share the 2 cores); and the p95 time of one account's erasure, first step to done.
`BENCH_ERASURE_ACCOUNTS` scales it down (default 1,000).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import redis

from bench.common import (
    BINDERY,
    OUT,
    Result,
    bench_env,
    process,
    scratch_database,
    wait_for_value,
    wait_until,
)
from bench.s3 import s3_server
from bench.workers import PROCESSES, THREADS, bindery_workers
from workers.db import connect, drop_database, maintenance_dsn, quote_identifier
from workers.devstack import commands
from workers.devstack.servers import free_port, running
from workers.s3 import s3_client
from workers.settings import Settings, load_settings

ACCOUNTS = int(os.environ.get("BENCH_ERASURE_ACCOUNTS", "1000"))
INSTANCES, OBJECTS, EVENTS = 2, 30, 200
CONCURRENCY = 64
WEBHOOK_SECRET = "whsec_bench_erasure"  # noqa: S105  # nosec B105 (the bench's own fake)
AFTER_DELETION = ("customer.subscription.deleted", "customer.deleted")


@contextmanager
def stand_ins(web_port: int) -> Iterator[dict[str, str]]:
    """SeaweedFS, the SMTP sink, localstripe behind stripe_extras delivering its webhooks
    to `web_port`; the variables naming them."""
    OUT.mkdir(exist_ok=True)
    smtp_port, stripe_port, extras_port = free_port(), free_port(), free_port()
    webhooks = commands.stripe_webhooks(web_port, WEBHOOK_SECRET, delay="0.5:3", duplicates=0.1)
    with ExitStack() as stack:
        s3_endpoint = stack.enter_context(s3_server("erasure")).endpoint
        for name, command, port in (
            ("smtp", commands.smtp_sink(smtp_port, OUT / "erasure-mail"), smtp_port),
            ("localstripe", commands.localstripe(stripe_port), stripe_port),
            ("stripe_extras", commands.stripe_extras(extras_port, stripe_port, *webhooks), extras_port),
        ):
            stack.enter_context(running(name, command, port, OUT / f"erasure-{name}.log"))
        variables = {
            "S3_ENDPOINT_URL": s3_endpoint,
            "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "STRIPE_API_BASE": f"http://127.0.0.1:{extras_port}",
            "STRIPE_REQUESTS_PER_SECOND": "1000",
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
        os.environ.update(variables)
        yield variables


def _webhooks_pending(stripe_base: str) -> int:
    with urllib.request.urlopen(f"{stripe_base}/_extras/webhooks", timeout=5) as answer:
        return int(json.load(answer)["pending"])


async def _put_objects(settings: Settings, keys: list[str]) -> None:
    semaphore = asyncio.Semaphore(CONCURRENCY)
    async with s3_client(settings) as client:

        async def put(key: str) -> None:
            async with semaphore:
                await client.put_object(Bucket=settings.s3_bucket, Key=key, Body=b"encrypted dump " * 8)

        await asyncio.gather(*(put(key) for key in keys))


async def _populate(settings: Settings, tag: str) -> tuple[list[int], list[str]]:
    """The accounts, their Stripe customers and subscriptions, instance databases, objects
    and events; the account ids and the instance database URLs."""
    from stripe import StripeClient

    from tests.stripe_fake import monthly_plan, subscribe_by_card
    from workers.stripe_client import make_stripe_client

    conn = await connect(settings.database_url)
    maintenance = await asyncpg.connect(maintenance_dsn(settings.database_url))
    client: StripeClient
    client, http = make_stripe_client(settings)
    base = settings.database_url.rsplit("/", 1)[0]
    account_ids, database_urls, keys = [], [], []
    try:
        plan = await monthly_plan(client)
        for n in range(ACCOUNTS):
            email = f"bench.{tag}.{n}@example.org"
            account_id = await conn.fetchval(
                """INSERT INTO accounts (email, password_hash, first_name, last_name)
                   VALUES ($1, 'x', 'Bench', $2) RETURNING id""",
                email,
                f"Person{tag}{n}",
            )
            customer = await client.v1.customers.create_async(params={"email": email})
            await conn.execute(
                "UPDATE accounts SET stripe_customer_id = $1 WHERE id = $2", customer.id, account_id
            )
            await subscribe_by_card(client, customer.id, plan)
            for i in range(INSTANCES):
                name = f"bench_inst_{tag}_{n}_{i}"
                await maintenance.execute("CREATE DATABASE " + quote_identifier(name))
                instance_id = await conn.fetchval(
                    "INSERT INTO instances (account_id, name, database_url) VALUES ($1, $2, $3) RETURNING id",
                    account_id,
                    name,
                    f"{base}/{name}",
                )
                database_urls.append(f"{base}/{name}")
                keys += [
                    f"instances/{instance_id}/2026-11-{d:02d}/backup.dump.zst.age"
                    for d in range(1, OBJECTS + 1)
                ]
            now = datetime.now(UTC)
            await conn.executemany(
                """INSERT INTO stripe_events (id, type, object_id, created, state, payload, processed_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                [
                    (
                        f"evt_{tag}{n}x{e}",
                        "customer.subscription.updated",
                        f"sub_{tag}{n}",
                        now - timedelta(minutes=e),
                        "done",
                        {
                            "id": f"evt_{tag}{n}x{e}",
                            "data": {
                                "object": {
                                    "id": f"sub_{tag}{n}",
                                    "object": "subscription",
                                    "customer": customer.id,
                                    "status": "active",
                                    "note": "x" * 200,
                                }
                            },
                        },
                        now,
                    )
                    for e in range(EVENTS)
                ],
            )
            account_ids.append(account_id)
    finally:
        await maintenance.close()
        await conn.close()
        await http.close_async()
    await _put_objects(settings, keys)
    return account_ids, database_urls


async def _request_erasures(settings: Settings, account_ids: list[int]) -> list[int]:
    """The accounts' erasure requests, due now."""
    from tasks.erasure.requests import request_erasure

    conn = await connect(settings.database_url)
    try:
        requests = [
            (await request_erasure(conn, account_id, grace=timedelta(0), requested_by="bench"))[0]["id"]
            for account_id in account_ids
        ]
    finally:
        await conn.close()
    return requests


async def _raw_delete_rate(settings: Settings, count: int) -> float:
    """Objects per second of batched DeleteObjects (1,000 keys a request), one client."""
    keys = [f"baseline/{n:07d}.age" for n in range(count)]
    await _put_objects(settings, keys)
    async with s3_client(settings) as client:
        started = time.perf_counter()
        for start in range(0, count, 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            await client.delete_objects(Bucket=settings.s3_bucket, Delete={"Objects": batch, "Quiet": True})
        return count / (time.perf_counter() - started)


async def _step_delete_rate(settings: Settings, count: int) -> float:
    """Objects per second of erasure's own `backup_objects` step, `PROCESSES × THREADS`
    accounts at a time, over `count` objects laid out as the accounts' are (instances
    the catalog does not know: the step lists them, as it must find orphans too)."""
    from tasks.erasure.context import Erasure
    from tasks.erasure.steps import backup_objects
    from workers.db import create_pool
    from workers.stripe_calls import RateLimitedStripe
    from workers.stripe_client import make_stripe_client

    first = 10_000_000
    accounts = count // (INSTANCES * OBJECTS)
    instance_ids = [[first + a * INSTANCES + i for i in range(INSTANCES)] for a in range(accounts)]
    keys = [
        f"instances/{instance_id}/2026-11-{d:02d}/backup.dump.zst.age"
        for ids in instance_ids
        for instance_id in ids
        for d in range(1, OBJECTS + 1)
    ]
    await _put_objects(settings, keys)
    pool = await create_pool(settings.database_url, max_size=PROCESSES * THREADS)
    stripe_client, http = make_stripe_client(settings)
    semaphore = asyncio.Semaphore(PROCESSES * THREADS)
    try:
        async with s3_client(settings) as client:

            async def erase_objects(ids: list[int]) -> int:
                erasure = Erasure(
                    0, 0, settings, pool, stripe_client, RateLimitedStripe(None), instance_ids=ids, s3=client
                )
                async with semaphore:
                    return (await backup_objects(erasure))["objects"]

            started = time.perf_counter()
            deleted = sum(await asyncio.gather(*(erase_objects(ids) for ids in instance_ids)))
            elapsed = time.perf_counter() - started
    finally:
        await pool.close()
        await http.close_async()
    if deleted != len(keys):
        raise RuntimeError(f"the step deleted {deleted} of {len(keys)} objects")
    return deleted / elapsed


async def _outcome(database_url: str) -> dict[str, Any]:
    conn = await connect(database_url)
    try:
        rows = await conn.fetch(
            """
            SELECT r.id, min(s.started_at) AS started, max(s.finished_at) AS finished,
                   sum(EXTRACT(EPOCH FROM s.finished_at - s.started_at))
                       FILTER (WHERE s.step = 'backup_objects') AS backup_seconds,
                   sum((s.counts ->> 'objects')::int) FILTER (WHERE s.step = 'backup_objects') AS objects
              FROM erasure_requests r JOIN erasure_steps s ON s.request_id = r.id
             WHERE r.state = 'done' GROUP BY r.id
            """
        )
        durations = sorted((row["finished"] - row["started"]).total_seconds() for row in rows)
        by_step = await conn.fetch(
            """SELECT step, avg(EXTRACT(EPOCH FROM finished_at - started_at)) AS seconds
                 FROM erasure_steps WHERE finished_at IS NOT NULL GROUP BY step ORDER BY 2 DESC"""
        )
        left = await conn.fetchval("SELECT count(*) FROM accounts")
        return {
            "done": len(rows),
            "left": left,
            "p95": durations[int(0.95 * (len(durations) - 1))] if durations else float("nan"),
            "objects": sum(row["objects"] or 0 for row in rows),
            "backup_seconds": sum(float(row["backup_seconds"] or 0) for row in rows),
            "slowest_steps": ", ".join(f"{row['step']} {float(row['seconds']):.2f} s" for row in by_step[:3]),
        }
    finally:
        await conn.close()


@contextmanager
def instance_databases_dropped(tag: str) -> Iterator[None]:
    """Erasure drops the instance databases; a run stopped half-way must not leave them."""
    try:
        yield
    finally:
        asyncio.run(_drop_instance_databases(tag))


async def _drop_instance_databases(tag: str) -> None:
    url = load_settings().database_url
    conn = await connect(maintenance_dsn(url))
    try:
        names = await conn.fetch(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", f"bench_inst_{tag}_"
        )
    finally:
        await conn.close()
    base = url.rsplit("/", 1)[0]
    for row in names:
        await drop_database(f"{base}/{row['datname']}")


def _inbox_drained(database_url: str, timeout: float) -> None:
    wait_for_value(
        database_url,
        "SELECT count(*) FROM stripe_events WHERE state IN ('received', 'processing')",
        until=lambda pending: pending == 0,
        timeout=timeout,
        what="the inbox drained",
    )


def run() -> list[Result]:
    tag = secrets.token_hex(3)
    web_port = free_port()
    with (
        scratch_database() as database_url,
        stand_ins(web_port) as variables,
        instance_databases_dropped(tag),
    ):
        env = bench_env(database_url, **variables)
        os.environ["DATABASE_URL"] = database_url
        settings = load_settings()
        stripe_base = variables["STRIPE_API_BASE"]
        redis.Redis.from_url(env["BROKER_URL"]).flushdb()

        from tasks.erasure.actors import run as erasure_run
        from workers.enqueue import enqueue_many

        with (
            process([BINDERY, "web", "--port", str(web_port)], env, "erasure-web.log"),
            bindery_workers(env, "erasure", "billing"),
        ):
            account_ids, _ = asyncio.run(_populate(settings, tag))
            # The set-up's own webhooks (customers, subscriptions, invoices) in and applied.
            wait_until(lambda: _webhooks_pending(stripe_base) == 0, 600, "the set-up's webhooks")
            _inbox_drained(database_url, 600)
            paid = asyncio.run(_count(database_url, "SELECT count(*) FROM paid_accounts"))
            if paid != ACCOUNTS:
                raise RuntimeError(f"{paid} of {ACCOUNTS} accounts are paid after the set-up's webhooks")
            objects = ACCOUNTS * INSTANCES * OBJECTS
            baseline = asyncio.run(_raw_delete_rate(settings, objects))
            step_alone = asyncio.run(_step_delete_rate(settings, objects))
            request_ids = asyncio.run(_request_erasures(settings, account_ids))

            started = time.perf_counter()
            enqueue_many(erasure_run.broker, [erasure_run.message(request_id) for request_id in request_ids])
            wait_for_value(
                database_url,
                "SELECT count(*) FROM erasure_requests WHERE state = 'done'",
                until=lambda done: done == ACCOUNTS,
                timeout=3600,
                what="every erasure",
            )
            elapsed = time.perf_counter() - started
            # Stripe's after-deletion webhooks: every one in, none applied.
            wait_until(lambda: _webhooks_pending(stripe_base) == 0, 600, "the after-deletion webhooks")
            _inbox_drained(database_url, 600)
        outcome = asyncio.run(_outcome(database_url))
        late = asyncio.run(_after_deletion(database_url))
    if outcome["left"] or outcome["objects"] != objects:
        raise RuntimeError(
            f"erasure left {outcome['left']} accounts, deleted {outcome['objects']} of {objects}"
        )
    if late["applied"] or late["subscriptions"] or late["ignored"] < 2 * ACCOUNTS:
        raise RuntimeError(f"after-deletion webhooks: {late}")
    per_thread = outcome["objects"] / outcome["backup_seconds"]
    webhooks = f"{late['ignored']:,} after-deletion webhooks stored as ignored during the run"
    return [
        Result(
            f"erasure: accounts/s ({ACCOUNTS:,}, {PROCESSES}p×{THREADS}t)",
            ACCOUNTS / elapsed,
            float("nan"),
            "accounts/s",
            f"{INSTANCES} databases, {INSTANCES * OBJECTS} objects, {EVENTS} events each; {webhooks}",
        ),
        Result(
            f"erasure: backup objects deleted/s (the step alone, {PROCESSES * THREADS} at a time)",
            step_alone,
            baseline,
            "objects/s",
            "baseline: raw batched DeleteObjects, 1,000 keys a request, one client",
        ),
        Result(
            "erasure: backup objects deleted/s (one step, in the full run)",
            per_thread,
            baseline,
            "objects/s",
            "the same baseline; the step shares the cores with the other erasures and the webhooks",
        ),
        Result(
            "erasure: p95 time per account",
            outcome["p95"],
            float("nan"),
            "s",
            f"goal ≤ 5 s; mean of the slowest steps: {outcome['slowest_steps']}",
        ),
    ]


async def _count(database_url: str, query: str) -> int:
    conn = await connect(database_url)
    try:
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


async def _after_deletion(database_url: str) -> dict[str, int]:
    """Stripe's after-deletion events in the inbox, by outcome, and subscriptions left."""
    conn = await connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT state, count(*) FROM stripe_events WHERE type = ANY($1::text[]) GROUP BY state",
            list(AFTER_DELETION),
        )
        by_state = {row[0]: row[1] for row in rows}
        return {
            "ignored": by_state.get("ignored", 0),
            "applied": sum(count for state, count in by_state.items() if state != "ignored"),
            "subscriptions": await conn.fetchval("SELECT count(*) FROM subscriptions"),
        }
    finally:
        await conn.close()
