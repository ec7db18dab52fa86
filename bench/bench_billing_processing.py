"""End-to-end processing of 100,000 Stripe events (10 % duplicates, shuffled) from the inbox
to the billing tables, against a no-op Dramatiq actor with the same processes and threads.
The final tables must equal the generator's truth."""

from __future__ import annotations

import asyncio
import json
import random
import time

import redis

from bench.common import Result, bench_env, scratch_database
from bench.workers import PROCESSES, THREADS, bindery_workers, noop_messages_per_second
from workers.db import connect

EVENTS = 100_000
PER_SUBSCRIPTION = 5
STATUSES = ["incomplete", "trialing", "active", "past_due", "canceled", "unpaid"]


def generate(seed: int = 7) -> tuple[list[bytes], dict[str, str]]:
    """Signed-free event bodies (they go straight to the inbox) and each subscription's final status."""
    rng = random.Random(seed)
    unique = int(EVENTS / 1.1)
    bodies, truth = [], {}
    for n in range(unique // PER_SUBSCRIPTION):
        sub_id = f"sub_bench{n:06d}"
        for step in range(PER_SUBSCRIPTION):
            status = rng.choice(STATUSES)
            event = {
                "id": f"evt_bench{n:06d}x{step}",
                "object": "event",
                "type": "customer.subscription.updated",
                "created": 1_790_000_000 + step,
                "data": {
                    "object": {
                        "id": sub_id,
                        "object": "subscription",
                        "customer": f"cus_bench{n % 997}",
                        "status": status,
                        "cancel_at_period_end": False,
                    }
                },
            }
            bodies.append(json.dumps(event).encode())
            truth[sub_id] = status
    bodies += rng.sample(bodies, EVENTS - len(bodies))  # Stripe's duplicate deliveries
    rng.shuffle(bodies)
    return bodies, truth


async def _process_all(database_url: str, bodies: list[bytes]) -> tuple[float, dict[str, str]]:
    from tasks.billing.actors import send_events
    from tasks.billing.inbox import parse_event, store_events

    # Parsing belongs to the receiver (measured by the webhooks benchmark); like the
    # baseline's messages, the deliveries are built before the clock starts.
    deliveries = [parse_event(body) for body in bodies]
    conn = await connect(database_url)
    try:
        started = time.perf_counter()
        for i in range(0, len(deliveries), 500):  # what the receiver stores, 500 deliveries at a time
            batch = deliveries[i : i + 500]
            new = await store_events(conn, batch)
            fresh = [event.id for event, is_new in zip(batch, new, strict=True) if is_new]
            await send_events(fresh)
        while await conn.fetchval(
            "SELECT count(*) FROM stripe_events WHERE state IN ('received', 'processing')"
        ):
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started
        rows = await conn.fetch("SELECT id, status FROM subscriptions")
        return len(bodies) / elapsed, {row["id"]: row["status"] for row in rows}
    finally:
        await conn.close()


def run() -> list[Result]:
    bodies, truth = generate()
    with scratch_database() as database_url:
        env = bench_env(database_url)
        redis.Redis.from_url(env["BROKER_URL"]).flushdb()
        baseline = noop_messages_per_second(env, EVENTS)
        with bindery_workers(env, "billing"):
            ours, final = asyncio.run(_process_all(database_url, bodies))
        redis.Redis.from_url(env["BROKER_URL"]).flushdb()
    if final != truth:
        wrong = sum(1 for key in truth if final.get(key) != truth[key])
        raise RuntimeError(f"{wrong} of {len(truth)} subscriptions differ from the generator's truth")
    return [
        Result(
            f"billing: events processed/s ({EVENTS:,}, {PROCESSES}p×{THREADS}t)",
            ours,
            baseline,
            "events/s",
            f"10% duplicates, shuffled; {len(truth):,} subscriptions equal the truth",
        ),
    ]
