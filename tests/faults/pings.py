"""What the fault scenarios on jobs share: `bindery web` with a token, a batch of
`system.ping` jobs asked for through it before any worker runs (so that a fault always
finds work in flight), and what Postgres says of them afterwards."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import asyncpg

from tests.http import answers, call
from tests.processes import bindery, eventually, run_bindery
from workers.devstack.servers import free_port


@dataclass(frozen=True)
class Web:
    base: str
    headers: dict[str, str]
    job_ids: list[str]

    def ping(self) -> tuple[int, dict[str, str]]:
        status, _, body = call("POST", f"{self.base}/jobs/system.ping", body={}, headers=self.headers)
        return status, body


@asynccontextmanager
async def web_with_pings(env: dict[str, str], logs: Path, count: int) -> AsyncIterator[Web]:
    created = run_bindery("token", "create", f"faults-{secrets.token_hex(4)}", "--scope", "system", env=env)
    assert created.returncode == 0, created.stderr
    port = free_port()
    web = Web(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {created.stdout.strip()}"}, [])
    with bindery("web", "--port", str(port), log=logs / "web.log", env=env):
        await eventually(lambda: answers(f"{web.base}/healthz"), 30, "bindery web")
        for _ in range(count):
            status, body = web.ping()
            assert status == 202
            web.job_ids.append(body["job_id"])
        yield web


def ping_worker(env: dict[str, str], log: Path, threads: int) -> AbstractContextManager[Popen[bytes]]:
    """One `bindery worker` process with `threads` threads, logging to `log`."""
    return bindery("worker", "--processes", "1", "--threads", str(threads), log=log, env=env)


@dataclass(frozen=True)
class Pings:
    """Counts over one scenario's jobs."""

    pool: asyncpg.Pool
    job_ids: list[str]

    async def done(self) -> int:
        count = await self.pool.fetchval(
            "SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'done'", self.job_ids
        )
        return int(count)

    async def some_done(self) -> bool:
        return await self.done() >= 50

    async def all_done(self) -> bool:
        return await self.done() == len(self.job_ids)

    async def runs(self) -> int:
        """How many times a ping ran: each run writes one audit row."""
        count = await self.pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'system.ping' AND at >= "
            "(SELECT min(created_at) FROM jobs WHERE id = ANY($1::uuid[]))",
            self.job_ids,
        )
        return int(count)

    async def age(self, seconds: int) -> None:
        """Move the jobs' last touch back: time passing for the reconciler, not waited for."""
        await self.pool.execute(
            "UPDATE jobs SET updated_at = updated_at - make_interval(secs => $2) WHERE id = ANY($1::uuid[])",
            self.job_ids,
            seconds,
        )
