"""Durable webhook acceptance: signed ~2 KB Stripe events per second at 64 connections, each
acknowledged only once committed to the inbox, against the bare aiohttp handler.

`BENCH_WEBHOOKS_SECONDS` sets each round's length (default 8); `BENCH_WEBHOOKS_SYNC=0`
skips the `os.sync()` before each round, so that the disk's own writeback of what earlier
rounds wrote falls inside the measurement (with 15 s rounds it does)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time

import stripe

from bench.common import Result, bench_env, scratch_database
from bench.load import PreparedRequests
from bench.servers import bare_and_bindery
from workers.db import connect

CONNECTIONS = 64
SECONDS = int(os.environ.get("BENCH_WEBHOOKS_SECONDS", "8"))
SYNC_FIRST = os.environ.get("BENCH_WEBHOOKS_SYNC", "1") != "0"
ROUNDS = 3
EVENTS = 45_000 * SECONDS  # a third is more than bindery accepts in SECONDS: no event is sent twice
SECRET = "whsec_bench"  # noqa: S105 (a benchmark's own signing secret)


def signed_events(count: int) -> PreparedRequests:
    now = int(time.time())
    padding = "x" * 1500  # what a customer.subscription.updated event weighs, roughly
    prepared = []
    for _ in range(count):
        event = {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "type": "customer.subscription.updated",
            "created": now,
            "livemode": False,
            "data": {
                "object": {"id": f"sub_{secrets.token_hex(8)}", "object": "subscription", "note": padding}
            },
        }
        body = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(body, SECRET, timestamp=now)
        prepared.append(({"Stripe-Signature": header, "Content-Type": "application/json"}, body.encode()))
    return prepared


async def _stored(database_url: str) -> int:
    conn = await connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM stripe_events"))
    finally:
        await conn.close()


def run() -> list[Result]:
    with scratch_database() as database_url:
        env = bench_env(database_url, STRIPE_WEBHOOK_SECRET=SECRET)
        events = signed_events(EVENTS)
        rounds = bare_and_bindery(
            env,
            "/webhooks/stripe",
            events,
            connections=CONNECTIONS,
            seconds=SECONDS,
            rounds=ROUNDS,
            sync_first=SYNC_FIRST,
        )
        stored = asyncio.run(_stored(database_url))
    if rounds.bindery_errors:
        raise RuntimeError(f"bindery web refused {rounds.bindery_errors} signed events")
    accepted = round(sum(load.requests_per_second for load in rounds.bindery) * SECONDS)
    if stored < accepted * 0.98:  # wrk's count includes requests cut off at the end
        raise RuntimeError(f"{accepted} events acknowledged but only {stored} stored")
    bare, ours = rounds.medians()
    return [
        Result(
            "webhooks: stored events/s @64",
            ours.requests_per_second,
            bare.requests_per_second,
            "req/s",
            f"{ours.generator}, {rounds.describe()}, ~2 KB signed events, {stored} stored"
            + ("" if SYNC_FIRST else ", no os.sync() before the rounds"),
        ),
        Result("webhooks: p50 latency", ours.p50_ms, bare.p50_ms, "ms"),
        Result("webhooks: p99 latency", ours.p99_ms, bare.p99_ms, "ms", "goal p99 ≤ 20 ms"),
    ]
