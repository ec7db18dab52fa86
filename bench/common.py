"""What every benchmark shares: a result row, a scratch database, bindery subprocesses."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from schema.runner import migrate
from workers.db import connect, drop_database, ensure_database

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

    async def create() -> None:
        await ensure_database(url)
        conn = await connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(create())
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
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)
