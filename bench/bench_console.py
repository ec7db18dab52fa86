"""The operator console's pages at scale: 100,000 accounts, 1,000,000 inbox events,
3,000 paid instances × 30 days of backups, a 100,000-recipient campaign, 100,000 job
requests. Each page is asked for `BENCH_CONSOLE_REQUESTS` (200) times, one at a time,
by a logged-in operator, against a bare aiohttp handler that asks Postgres `SELECT 1`
(bench/bare_server.py), served the same way; p50 and p95 of each. Goal: p95 < 100 ms.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import time

import aiohttp
import asyncpg

from bench.common import BINDERY, Result, bench_env, scratch_database
from bench.servers import serving

REQUESTS = int(os.environ.get("BENCH_CONSOLE_REQUESTS", "200"))
PASSWORD = "bench console password"  # noqa: S105 (the benchmark's own operator)
PAGES = [
    "/console/",
    "/console/backups",
    "/console/backups/instances/1",
    "/console/stripe",
    "/console/stripe?type=invoice.paid&page=3",
    "/console/jobs",
    "/console/privacy",
    "/console/campaigns",
    "/console/campaigns/1",
    "/console/campaigns/1/progress",
]


async def build(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """
    INSERT INTO accounts (email, password_hash, first_name, last_name, business_name)
    SELECT 'c' || g || '@example.org', 'x', 'Prénom ' || g, 'Nom ' || g, 'Maison ' || g
      FROM generate_series(1, 100000) g;
    INSERT INTO instances (account_id, name, database_url)
    SELECT g, 'shop', 'postgresql://absent/shop_' || g FROM generate_series(1, 3000) g;
    INSERT INTO subscriptions (id, customer_id, account_id, status)
    SELECT 'sub_b' || g, 'cus_b' || g, g, 'active' FROM generate_series(1, 3000) g;
    INSERT INTO backups (id, instance_id, day, state, object_key, manifest_key, dump_bytes, object_bytes,
                         started_at, finished_at)
    SELECT gen_random_uuid(), i, current_date - d,
           CASE WHEN (i + d) % 97 = 0 THEN 'failed' ELSE 'verified' END,
           'k', 'm', 1000000 + i * 10 + d, 300000, now() - d * interval '1 day' - interval '3 minutes',
           now() - d * interval '1 day'
      FROM generate_series(1, 3000) i, generate_series(0, 29) d;
    INSERT INTO stripe_events (id, type, object_id, created, livemode, received_at, state, attempts,
                               last_error,
                               payload)
    SELECT 'evt_b' || g, CASE g % 3 WHEN 0 THEN 'invoice.paid' WHEN 1 THEN 'customer.updated'
                         ELSE 'customer.subscription.updated' END,
           'in_b' || g, now() - g * interval '1 second', false, now() - g * interval '1 second',
           CASE WHEN g % 500 = 0 THEN 'failed' ELSE 'done' END, CASE WHEN g % 500 = 0 THEN 10 ELSE 1 END,
           CASE WHEN g % 500 = 0 THEN 'StripeError' END,
           jsonb_build_object('id', 'evt_b' || g, 'data', jsonb_build_object('object',
               jsonb_build_object('id', 'in_b' || g, 'customer', 'cus_b' || (g % 3000 + 1))))
      FROM generate_series(1, 1000000) g;
    INSERT INTO jobs (id, name, arguments, status, attempts, error, created_at, finished_at)
    SELECT gen_random_uuid(), 'billing.push_account', jsonb_build_object('account_id', g % 100000 + 1),
           CASE WHEN g % 200 = 0 THEN 'failed' ELSE 'done' END, 1,
           CASE WHEN g % 200 = 0 THEN 'JobError' END, now() - g * interval '1 second',
           now() - g * interval '1 second'
      FROM generate_series(1, 100000) g;
    INSERT INTO breach_campaigns (subject_fr, subject_en, body_fr, body_en, state, created_by, started_at,
                                  active_at)
    VALUES ('Incident', 'Incident', 'Bonjour ${first_name}', 'Hello ${first_name}', 'sending', 'bench',
            now() - interval '10 minutes', now());
    INSERT INTO breach_recipients (campaign_id, account_id, email, state, sent_at, reply_code)
    SELECT 1, id, email, CASE WHEN id % 2 = 0 THEN 'sent' ELSE 'pending' END,
           CASE WHEN id % 2 = 0 THEN now() - (id % 600) * interval '1 second' END,
           CASE WHEN id % 2 = 0 THEN 250 END
      FROM accounts;
    INSERT INTO erasure_requests (account_id, requested_by, run_after)
    SELECT g, 'bench', now() + interval '1 day' FROM generate_series(90001, 90100) g;
    INSERT INTO privacy_requests (kind, account_id, received_by, due_at)
    SELECT 'other', g, 'bench', now() + (g % 40) * interval '1 day' FROM generate_series(80001, 81000) g;
            """
        )
        await conn.execute("VACUUM ANALYZE")  # a statement of its own: VACUUM runs in no transaction
    finally:
        await conn.close()


async def _timed(client: aiohttp.ClientSession, url: str) -> list[float]:
    for _ in range(5):  # warm-up
        async with client.get(url) as answer:
            await answer.read()
            if answer.status != 200:
                raise RuntimeError(f"{url} answered {answer.status}")
    seconds = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        async with client.get(url) as answer:
            await answer.read()
        seconds.append(time.perf_counter() - started)
    return seconds


async def _console(base: str) -> dict[str, list[float]]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        async with client.get(f"{base}/console/login") as page:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert token is not None
        form = {"csrf_token": token.group(1), "username": "bench", "password": PASSWORD}
        async with client.post(f"{base}/console/login", data=form) as answer:
            if answer.status != 200:
                raise RuntimeError(f"login answered {answer.status}")
        return {page: await _timed(client, base + page) for page in PAGES}


async def _bare(base: str) -> list[float]:
    async with aiohttp.ClientSession() as client:
        return await _timed(client, f"{base}/select1")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run() -> list[Result]:
    with scratch_database() as url:
        asyncio.run(build(url))
        env = bench_env(url, BENCH_SELECT_ONE_URL=url)
        subprocess.run(
            [BINDERY, "operator", "create", "bench", "--role", "admin", "--password-stdin"],
            input=PASSWORD + "\n",
            env=env,
            text=True,
            capture_output=True,
            check=True,
        )
        with serving("bare", env, "console-bare.log") as (base, _):
            bare = asyncio.run(_bare(base))
        with serving("bindery", env, "console-web.log") as (base, _):
            pages = asyncio.run(_console(base))
    bare_p95 = _percentile(bare, 0.95) * 1000
    results = []
    for page, seconds in pages.items():
        p95 = _percentile(seconds, 0.95) * 1000
        p50 = statistics.median(seconds) * 1000
        results.append(
            Result(f"console {page}", p95, bare_p95, "ms p95", f"p50 {p50:.1f} ms; goal p95 < 100 ms")
        )
    return results
