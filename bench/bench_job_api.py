"""POST /jobs/system.ping accepted per second at 64 connections, against a bare aiohttp handler."""

from __future__ import annotations

import asyncio
import sys
import urllib.request

import redis

from bench.common import BINDERY, Result, bench_env, process, scratch_database, wait_until
from bench.load import post_load
from workers.db import connect
from workers.devstack.servers import free_port
from workers.tokens import create_token

CONNECTIONS = 64
SECONDS = 10


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


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
        servers = {
            "bare": [sys.executable, "-m", "bench.bare_server"],
            "bindery": [BINDERY, "web", "--port"],
        }
        loads = {}
        for name, argv in servers.items():
            port = free_port()
            with process([*argv, str(port)], env, f"{name}.log"):
                wait_until(lambda: _up(f"http://127.0.0.1:{port}/healthz"), 20, name)  # noqa: B023
                loads[name] = post_load(
                    f"http://127.0.0.1:{port}/jobs/system.ping",
                    token,
                    "{}",
                    connections=CONNECTIONS,
                    seconds=SECONDS,
                )
        bare, ours = loads["bare"], loads["bindery"]
        redis.Redis.from_url(env["BROKER_URL"]).flushdb()
    if ours.errors:
        raise RuntimeError(f"bindery web answered {ours.errors} requests with an error")
    return [
        Result(
            "job API: accepted req/s @64",
            ours.requests_per_second,
            bare.requests_per_second,
            "req/s",
            f"{ours.generator}, {SECONDS}s",
        ),
        Result("job API: p50 latency", ours.p50_ms, bare.p50_ms, "ms"),
        Result("job API: p99 latency", ours.p99_ms, bare.p99_ms, "ms"),
    ]
