"""What every benchmark shares: a result row, a scratch database, bindery subprocesses."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.db import connect, drop_database, migrate_database
from workers.devstack.servers import stop

BINDERY = str(Path(sys.executable).parent / "bindery")
OUT = Path(__file__).parent / ".out"


@dataclass(frozen=True)
class Result:
    name: str
    figure: float
    baseline: float
    unit: str
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.figure / self.baseline if self.baseline else float("nan")


@contextmanager
def scratch_database() -> Iterator[str]:
    url = f"postgresql://postgres@127.0.0.1:5432/bindery_bench_{secrets.token_hex(4)}"

    asyncio.run(migrate_database(url, create=True))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))


def bench_env(database_url: str, **overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }


@contextmanager
def process(argv: list[str], env: dict[str, str], log_name: str) -> Iterator[subprocess.Popen[bytes]]:
    OUT.mkdir(exist_ok=True)
    with (OUT / log_name).open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc, timeout=15)


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


POLL_SECONDS = 0.2


def wait_for_value(
    database_url: str, query: str, *args: object, until: Callable[[Any], bool], timeout: float, what: str
) -> None:
    """Run `query` (one value) every POLL_SECONDS on one connection until `until(value)`.
    What waits on a run must not load it: a new connection every 50 ms costs Postgres a
    process each time (a 10,000-recipient breach campaign ran at 0.65 of the raw blast
    with that, 0.91 without)."""

    async def wait() -> None:
        conn = await connect(database_url)
        try:
            deadline = time.monotonic() + timeout
            while not until(await conn.fetchval(query, *args)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"timed out waiting for {what}")
                await asyncio.sleep(POLL_SECONDS)
        finally:
            await conn.close()

    asyncio.run(wait())
