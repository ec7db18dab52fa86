"""The access export of one large account (`bindery privacy export ID --with-instances`).

An account with `BENCH_EXPORT_ROWS` (50,000) rows across its tables (job records, inbox
events naming its customer, invoices, audit records) and an instance database of
`BENCH_EXPORT_MB` (200 MB as PostgreSQL counts it), exported in a process of its own to
a local SeaweedFS (archive built, uploaded, link emailed to an SMTP sink), against the
least the same reading costs: a plain `pg_dump` of the instance to /dev/null plus a
`COPY` of the same rows (the data map's export queries) to nowhere. The account's
customer is in a Stripe fake (localstripe), which the export asks for it. `BENCH_EXPORT_ROUNDS`
(3) alternating rounds of the baseline, the archive built into nowhere (no S3: where the
time goes before the upload), and the export; medians. Speeds in MB/s of instance size;
the export process's peak RSS against the 150 MB bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack

import asyncpg

from bench.bench_backups import ROWS_PER_MB, source_database
from bench.common import OUT, Result, bench_env, scratch_database
from bench.s3 import s3_server
from tasks.billing import stripe_ids
from workers.data_map import Subject
from workers.devstack import commands, seaweedfs
from workers.devstack.servers import free_port, running
from workers.domains import data_map
from workers.libpq import tool_connection
from workers.settings import load_settings
from workers.stripe_client import make_stripe_client

ROWS = int(os.environ.get("BENCH_EXPORT_ROWS", "50000"))
INSTANCE_MB = int(os.environ.get("BENCH_EXPORT_MB", "200"))
ROUNDS = int(os.environ.get("BENCH_EXPORT_ROUNDS", "3"))
RSS_BOUND = 150 * 2**20


async def _account(catalog_url: str, instance_url: str) -> int:
    """The account, its instance, and ROWS rows about it: 40 % jobs, 30 % inbox events,
    20 % audit records, 10 % invoices."""
    conn = await asyncpg.connect(catalog_url)
    try:
        account_id: int = await conn.fetchval(
            """INSERT INTO accounts (email, password_hash, first_name, last_name, stripe_customer_id)
               VALUES ('export.bench@example.fr', 'x', 'Ana', 'Martin', NULL) RETURNING id"""
        )
        await conn.execute(
            "INSERT INTO instances (account_id, name, database_url) VALUES ($1, 'shop', $2)",
            account_id,
            instance_url,
        )
        customer = await _stripe_customer(account_id)
        await conn.execute("UPDATE accounts SET stripe_customer_id = $1 WHERE id = $2", customer, account_id)
        jobs, events, audit = ROWS * 4 // 10, ROWS * 3 // 10, ROWS * 2 // 10
        invoices = ROWS - jobs - events - audit
        await conn.execute(
            """INSERT INTO jobs (id, name, arguments, status, result)
               SELECT gen_random_uuid(), 'billing.push_account', jsonb_build_object('account_id', $1::bigint),
                      'done', '{"pushed": true}' FROM generate_series(1, $2::int)""",
            account_id,
            jobs,
        )
        await conn.execute(
            """INSERT INTO stripe_events (id, type, object_id, created, livemode, state, payload)
               SELECT 'evt_bench' || g, 'invoice.paid', 'in_bench' || g, now(), false, 'done',
                      jsonb_build_object('id', 'evt_bench' || g, 'type', 'invoice.paid', 'data',
                        jsonb_build_object('object', jsonb_build_object('id', 'in_bench' || g,
                          'object', 'invoice', 'customer', $1::text, 'total', 1900, 'currency', 'eur',
                          'lines', repeat('x', 400))))
                 FROM generate_series(1, $2::int) g""",
            customer,
            events,
        )
        await conn.execute(
            """INSERT INTO audit_log (actor, action, details)
               SELECT 'token:1', 'billing.push_account', jsonb_build_object('account_id', $1::bigint)
                 FROM generate_series(1, $2::int)""",
            account_id,
            audit,
        )
        await conn.execute(
            """INSERT INTO invoices (id, customer_id, account_id, number, currency, total, amount_due,
                                     amount_paid, status, created, hosted_invoice_url)
               SELECT 'in_bench' || g, $1, $2, 'INV-' || g, 'eur', 1900, 1900, 1900, 'paid', now(),
                      'https://invoice.stripe.com/i/acct_bench/' || md5(g::text)
                 FROM generate_series(1, $3::int) g""",
            customer,
            account_id,
            invoices,
        )
        await conn.execute("VACUUM ANALYZE")
        return account_id
    finally:
        await conn.close()


async def _stripe_customer(account_id: int) -> str:
    """A customer in the Stripe fake: the export asks Stripe for it."""
    client, http = make_stripe_client(load_settings())
    try:
        customer = await client.v1.customers.create_async(
            params={"email": "export.bench@example.fr", "metadata": {"account_id": str(account_id)}}
        )
    finally:
        await http.close_async()
    return str(customer.id)


def _export(env: dict[str, str], account_id: int, *where: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.export_process", str(account_id), *where],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the export failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])  # after its log lines
    return result


async def _copy_rows(catalog_url: str, account_id: int) -> int:
    """The data map's export queries, each as a COPY to nowhere; rows copied."""
    conn = await asyncpg.connect(catalog_url)
    copied = 0

    async def discard(data: bytes) -> None:
        nonlocal copied
        copied += data.count(b"\n")

    try:
        customer = await conn.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", account_id)
        instances = [
            row["id"]
            for row in await conn.fetch("SELECT id FROM instances WHERE account_id = $1", account_id)
        ]
        subject = Subject(account_id, customer, await stripe_ids(conn, account_id, customer), instances)
        for place in data_map():
            if place.export is not None:
                query = place.export.query
                await conn.copy_from_query(query.sql, *query.bind(subject), output=discard)
    finally:
        await conn.close()
    return copied


def _baseline(catalog_url: str, instance_url: str, account_id: int) -> float:
    """Seconds: `pg_dump --format=plain > /dev/null`, then the rows' COPY."""
    url, env = tool_connection(instance_url)
    started = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        subprocess.run(
            ["pg_dump", "--format=plain", "--no-owner", "--dbname", url], env=env, stdout=devnull, check=True
        )
    copied = asyncio.run(_copy_rows(catalog_url, account_id))
    if copied < ROWS:
        raise RuntimeError(f"the baseline copied {copied} rows, fewer than the {ROWS} built")
    return time.perf_counter() - started


async def _database_mb(url: str) -> float:
    conn = await asyncpg.connect(url)
    try:
        return float(await conn.fetchval("SELECT pg_database_size(current_database())")) / 2**20
    finally:
        await conn.close()


def run() -> list[Result]:
    with ExitStack() as stack:
        catalog_url = stack.enter_context(scratch_database())
        instance_url = stack.enter_context(source_database(INSTANCE_MB * ROWS_PER_MB))
        stack.enter_context(s3_server("export"))
        asyncio.run(seaweedfs.create_export_bucket(load_settings()))
        smtp_port, stripe_port, extras_port = free_port(), free_port(), free_port()
        OUT.mkdir(exist_ok=True)
        for name, command, port in (
            ("smtp", commands.smtp_sink(smtp_port, OUT / "export-mail"), smtp_port),
            ("localstripe", commands.localstripe(stripe_port), stripe_port),
            ("stripe_extras", commands.stripe_extras(extras_port, stripe_port), extras_port),
        ):
            stack.enter_context(running(name, command, port, OUT / f"export-{name}.log"))
        os.environ["STRIPE_API_BASE"] = f"http://127.0.0.1:{extras_port}"
        env = bench_env(catalog_url, SMTP_URL=f"smtp://127.0.0.1:{smtp_port}")
        account_id = asyncio.run(_account(catalog_url, instance_url))
        size_mb = asyncio.run(_database_mb(instance_url))
        baselines, exports, unsent = [], [], []
        for _ in range(ROUNDS):
            baselines.append(_baseline(catalog_url, instance_url, account_id))
            unsent.append(_export(env, account_id, "nowhere")["seconds"])
            exports.append(_export(env, account_id))
    baseline = statistics.median(baselines)
    export = statistics.median(e["seconds"] for e in exports)
    rounds = ", ".join(f"{b / e['seconds']:.2f}" for b, e in zip(baselines, exports, strict=True))
    peak = max(e["peak_rss"] for e in exports)
    archive_mb = exports[-1]["archive_bytes"] / 2**20
    return [
        Result(
            f"export: {ROWS:,} rows + {size_mb:.0f} MB instance",
            size_mb / export,
            size_mb / baseline,
            "MB/s of instance size",
            f"archive {archive_mb:.0f} MB; rounds {rounds}; goal ≥ 0.7",
        ),
        Result(
            "the same archive written to nowhere",
            size_mb / statistics.median(unsent),
            size_mb / baseline,
            "MB/s of instance size",
            "no S3, no email: where the time goes before the upload",
        ),
        Result("export process peak RSS", peak / 2**20, RSS_BOUND / 2**20, "MB", "goal < 150 MB"),
    ]
