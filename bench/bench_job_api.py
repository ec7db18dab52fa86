"""POST /jobs/system.ping accepted per second at 64 connections, against a bare aiohttp handler."""

from __future__ import annotations

import asyncio

import redis

from bench.common import Result, bench_env, scratch_database
from bench.servers import bare_and_bindery
from workers.db import connect
from workers.tokens import create_token

CONNECTIONS = 64
SECONDS = 8
ROUNDS = 3


async def _token(database_url: str) -> str:
    conn = await connect(database_url)
    try:
        return await create_token(conn, "bench", ["system"])
    finally:
        await conn.close()


def run() -> list[Result]:
    with scratch_database() as database_url:
        env = bench_env(database_url)
        token = asyncio.run(_token(database_url))
        request = ({"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, b"{}")
        rounds = bare_and_bindery(
            env, "/jobs/system.ping", [request], connections=CONNECTIONS, seconds=SECONDS, rounds=ROUNDS
        )
        redis.Redis.from_url(env["BROKER_URL"]).flushdb()
    if rounds.bindery_errors:
        raise RuntimeError(f"bindery web answered {rounds.bindery_errors} requests with an error")
    bare, ours = rounds.medians()
    return [
        Result(
            "job API: accepted req/s @64",
            ours.requests_per_second,
            bare.requests_per_second,
            "req/s",
            f"{ours.generator}, {rounds.describe()}",
        ),
        Result("job API: p50 latency", ours.p50_ms, bare.p50_ms, "ms"),
        Result("job API: p99 latency", ours.p99_ms, bare.p99_ms, "ms"),
    ]
