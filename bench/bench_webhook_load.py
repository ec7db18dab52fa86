"""The webhook receiver under a paced load for 60 s: 10 × a Stripe rate, 5 % of the
deliveries repeats of earlier events, 1 % with a bad signature.

Stripe's documentation gives no rate at which it delivers webhooks to an endpoint. The
nearest figure it documents is its API's rate limit in live mode, 100 requests a second
(docs.stripe.com/rate-limits); ten times that, 1,000 deliveries a second, is the load.
The same paced load goes to the bare aiohttp handler first (the baseline: what the
generator and the machine sustain). Checked afterwards: every event acknowledged with
a 200 is in the inbox (none lost), every bad signature got a 400 and stored nothing,
and the web process's memory (VmRSS, sampled each second) stays flat. Latencies (p50,
p99, max; from sending a request to reading its answer) are reported for both sides.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import stripe

from bench.common import Result, bench_env, scratch_database
from bench.servers import serving
from workers.db import connect

RATE = int(os.environ.get("BENCH_WEBHOOK_RATE", "1000"))
SECONDS = int(os.environ.get("BENCH_WEBHOOK_SECONDS", "60"))
CONNECTIONS = 64
SECRET = "whsec_bench_load"  # noqa: S105 (a benchmark's own signing secret)


@dataclass
class Delivery:
    event_id: str
    body: bytes
    headers: dict[str, str]
    good: bool


def deliveries(count: int) -> list[Delivery]:
    """New events, with one in 20 a repeat of an earlier one and one in 100 badly signed."""
    now = int(time.time())
    made: list[Delivery] = []
    for n in range(count):
        if n % 20 == 19 and made:
            made.append(made[secrets.randbelow(len(made))])
            continue
        event_id = f"evt_{secrets.token_hex(12)}"
        body = json.dumps(
            {
                "id": event_id,
                "object": "event",
                "type": "customer.subscription.updated",
                "created": now,
                "data": {"object": {"id": f"sub_{secrets.token_hex(8)}", "object": "subscription"}},
            }
        )
        good = n % 100 != 57
        secret = SECRET if good else "whsec_not_ours"
        header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=now)
        made.append(Delivery(event_id, body.encode(), {"Stripe-Signature": header}, good))
    return made


@dataclass
class Outcome:
    statuses: Counter[tuple[bool, int]] = field(default_factory=Counter)
    acknowledged: set[str] = field(default_factory=set)
    refused_bad: set[str] = field(default_factory=set)
    late: int = 0  # requests that started more than a second behind their schedule
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, request sent → answer read

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def paced(url: str, items: list[Delivery]) -> Outcome:
    outcome = Outcome()
    limit = asyncio.Semaphore(CONNECTIONS)
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def send(item: Delivery, due: float) -> None:
            async with limit:
                if time.monotonic() - due > 1:
                    outcome.late += 1
                headers = {**item.headers, "Content-Type": "application/json"}
                sent = time.monotonic()
                async with http.post(url, data=item.body, headers=headers) as response:
                    await response.read()
                    outcome.latencies.append(time.monotonic() - sent)
                    outcome.statuses[(item.good, response.status)] += 1
                    if response.status == 200 and item.good:
                        outcome.acknowledged.add(item.event_id)
                    if response.status == 400 and not item.good:
                        outcome.refused_bad.add(item.event_id)

        started = time.monotonic()
        tasks = []
        for n, item in enumerate(items):
            due = started + n / RATE
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(item, due)))
        await asyncio.gather(*tasks)
        outcome.seconds = time.monotonic() - started
    return outcome


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _load(name: str, env: dict[str, str], items: list[Delivery]) -> tuple[Outcome, list[float]]:
    samples: list[float] = []
    with serving(name, env, f"load-{name}.log") as (base, server):
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                samples.append(_rss_mb(server.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            outcome = asyncio.run(paced(f"{base}/webhooks/stripe", items))
        finally:
            done.set()
            sampler.join()
    return outcome, samples


async def _stored(database_url: str, ids: list[str]) -> set[str]:
    conn = await connect(database_url)
    try:
        rows = await conn.fetch("SELECT id FROM stripe_events WHERE id = ANY($1::text[])", ids)
        return {row["id"] for row in rows}
    finally:
        await conn.close()


def run() -> list[Result]:
    items = deliveries(RATE * SECONDS)
    with scratch_database() as database_url:
        env = bench_env(database_url, STRIPE_WEBHOOK_SECRET=SECRET)
        bare, _ = _load("bare", env, items)
        ours, rss = _load("bindery", env, items)
        stored = asyncio.run(_stored(database_url, [item.event_id for item in items]))
    bad = {item.event_id for item in items if not item.good}
    lost = ours.acknowledged - stored
    if lost or bad & stored or ours.refused_bad != bad:
        raise RuntimeError(
            f"{len(lost)} acknowledged events not stored; {len(bad & stored)} badly signed stored; "
            f"{len(bad - ours.refused_bad)} badly signed not refused"
        )
    warm = rss[5:] or rss
    statuses = ", ".join(
        f"{'good' if good else 'bad'} {status}: {count}"
        for (good, status), count in sorted(ours.statuses.items())
    )
    rate = len(items) / ours.seconds
    return [
        Result(
            f"webhook load: deliveries/s for {SECONDS} s (paced at {RATE})",
            rate,
            len(items) / bare.seconds,
            "req/s",
            f"5 % repeats, 1 % bad signatures; {len(ours.acknowledged)} acknowledged, all stored; "
            f"{len(bad)} bad, all refused; late starts {ours.late} (bare {bare.late}); statuses {statuses}",
        ),
        *(
            Result(
                f"webhook load: {label} latency",
                ours.percentile(share) * 1000,
                bare.percentile(share) * 1000,
                "ms",
                "goal p99 ≤ 20 ms" if label == "p99" else "",
            )
            for label, share in (("p50", 0.50), ("p99", 0.99), ("max", 1.0))
        ),
        Result(
            "webhook load: web RSS after warm-up, first → last (max)",
            warm[-1],
            warm[0],
            "MB",
            f"max {max(warm):.0f} MB over {len(rss)} samples",
        ),
    ]
