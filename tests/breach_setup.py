"""What the breach campaign tests share: a database of a test's own with n accounts
(the `own` fixture, in conftest), the project's SMTP sink, `bindery worker` on the
`mail` queue, and ways to read a campaign's state and what the sink received."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from subprocess import Popen

import asyncpg

from tests.processes import bindery, bindery_env, run_bindery
from workers.devstack import commands
from workers.devstack.servers import free_port, running
from workers.settings import load_settings

LANES, BATCH = 4, 100
DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Bindery:
    """A database of the test's own, so that a campaign's snapshot holds exactly its
    accounts, and the environment that points `bindery` processes at it."""

    url: str
    pool: asyncpg.Pool

    def env(self, smtp_url: str, **overrides: str) -> dict[str, str]:
        defaults = {
            "BREACH_MESSAGES_PER_SECOND": "5000",
            "BREACH_LANES": str(LANES),
            "BREACH_BATCH_SIZE": str(BATCH),
        }
        return bindery_env(DATABASE_URL=self.url, SMTP_URL=smtp_url, **{**defaults, **overrides})


@contextmanager
def sink(root: Path, *faults: str, port: int | None = None) -> Iterator[tuple[str, Path]]:
    port = port or free_port()
    directory = root / f"mail-{port}"
    with running("smtp sink", commands.smtp_sink(port, directory, *faults), port, root / f"sink-{port}.log"):
        yield f"smtp://127.0.0.1:{port}", directory


def message_ids(directory: Path) -> Counter[str]:
    parser = BytesHeaderParser()
    return Counter(
        str(parser.parsebytes(path.read_bytes())["Message-ID"]) for path in directory.glob("*.eml")
    )


def worker(log: Path, env: dict[str, str]) -> AbstractContextManager[Popen[bytes]]:
    return bindery(
        "worker", "--queues", "mail", "--processes", "1", "--threads", str(LANES), log=log, env=env
    )


def create_campaign(env: dict[str, str]) -> int:
    created = run_bindery("breach", "create", "--incident", str(DATA / "incident.toml"), env=env)
    assert created.returncode == 0, created.stderr
    return int(created.stdout.split()[1])


async def campaign_state(pool: asyncpg.Pool, campaign_id: int) -> str:
    return str(await pool.fetchval("SELECT state FROM breach_campaigns WHERE id = $1", campaign_id))


async def recipients(pool: asyncpg.Pool, campaign_id: int) -> dict[int, asyncpg.Record]:
    rows = await pool.fetch("SELECT * FROM breach_recipients WHERE campaign_id = $1", campaign_id)
    return {row["account_id"]: row for row in rows}


def expected_ids(campaign_id: int, account_ids: Iterable[int]) -> set[str]:
    sender_domain = load_settings().mail_from.rpartition("@")[2].rstrip(">")
    return {f"<breach.{campaign_id}.{account_id}@{sender_domain}>" for account_id in account_ids}


async def recipient_counts(pool: asyncpg.Pool, campaign_id: int) -> Counter[str]:
    rows = await pool.fetch(
        "SELECT state, count(*) AS n FROM breach_recipients WHERE campaign_id = $1 GROUP BY state",
        campaign_id,
    )
    return Counter({row["state"]: row["n"] for row in rows})


async def sent_at_least(pool: asyncpg.Pool, campaign_id: int, count: int) -> bool:
    return bool((await recipient_counts(pool, campaign_id))["sent"] >= count)


async def none_sending(pool: asyncpg.Pool, campaign_id: int) -> bool:
    return (await recipient_counts(pool, campaign_id))["sending"] == 0
