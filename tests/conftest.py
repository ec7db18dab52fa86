"""Real servers for the tests: a fresh Postgres database per session, a Redis database
number of our own, and subprocesses of `bindery` itself."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

# Settings are read from the environment when `workers.broker` is first imported, so the
# test values must be in place before any bindery module is.
TEST_DB = f"bindery_test_{os.getpid()}_{secrets.token_hex(3)}"
os.environ.update(
    BINDERY_ENV="development",
    DATABASE_URL=f"postgresql://postgres@127.0.0.1:5432/{TEST_DB}",
    BROKER_URL="redis://127.0.0.1:6379/15",
    WORKER_METRICS_PORT="0",
    SCHEDULER_METRICS_PORT="0",
    API_TOKEN_CACHE_SECONDS="0",
)
for variable in ("TLS_CERT_FILE", "TLS_KEY_FILE", "TRUST_PROXY", "STRIPE_API_BASE"):
    os.environ.pop(variable, None)

import asyncpg  # noqa: E402
import redis  # noqa: E402
import stripe  # noqa: E402

from tests.databases import new_bindery_database  # noqa: E402
from workers.db import create_pool, drop_database  # noqa: E402
from workers.devstack.local_services import START_POSTGRES, START_RABBITMQ, START_REDIS  # noqa: E402

REDIS_URL = os.environ["BROKER_URL"]
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [
        f"{name} is not answering on 127.0.0.1:{port}; start it with: {how}"
        for name, port, how in (
            ("PostgreSQL", 5432, START_POSTGRES),
            ("Redis", 6379, START_REDIS),
            ("RabbitMQ", 5672, START_RABBITMQ),
        )
        if not _answers(port)
    ]
    if missing:
        pytest.exit("\n".join(missing), returncode=3)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = os.environ["DATABASE_URL"]

    asyncio.run(new_bindery_database(url))
    yield url
    asyncio.run(drop_database(url))


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def stripe_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """localstripe behind `stripe_extras` (the parts of Stripe's API it lacks), started once
    for the tests that need a Stripe; the base URL to give the client."""
    from workers.devstack import commands
    from workers.devstack.servers import free_port, running

    logs = tmp_path_factory.mktemp("stripe")
    upstream, port = free_port(), free_port()
    with (
        running("localstripe", commands.localstripe(upstream), upstream, logs / "localstripe.log"),
        running("stripe_extras", commands.stripe_extras(port, upstream), port, logs / "stripe_extras.log"),
    ):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
async def stripe_client(
    stripe_fake: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[stripe.StripeClient]:
    """bindery's own Stripe client, pointed at the fake."""
    from workers.settings import load_settings
    from workers.stripe_client import make_stripe_client

    monkeypatch.setenv("STRIPE_API_BASE", stripe_fake)
    client, http = make_stripe_client(load_settings())
    yield client
    await http.close_async()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 server (SeaweedFS `weed mini`) with the settings' bucket and credentials,
    started once for the tests that need one; its endpoint, also put in S3_ENDPOINT_URL."""
    from workers.devstack import seaweedfs
    from workers.devstack.servers import free_port_block, running
    from workers.settings import load_settings

    settings = load_settings()
    root = tmp_path_factory.mktemp("s3")
    port = free_port_block(seaweedfs.PORT_OFFSETS)
    command = seaweedfs.server_command(root / "data", root / "identities.json", port, settings)
    endpoint = f"http://127.0.0.1:{port}"
    with running("seaweedfs", command, port, root / "weed.log", timeout=60):
        os.environ["S3_ENDPOINT_URL"] = endpoint
        _wait_for_bucket(endpoint)
        asyncio.run(seaweedfs.create_export_bucket(load_settings()))
        yield endpoint


def _wait_for_bucket(endpoint: str) -> None:
    import time

    from workers.devstack.seaweedfs import bucket_accepts_writes
    from workers.settings import load_settings

    deadline = time.monotonic() + 60
    while not asyncio.run(bucket_accepts_writes(load_settings())):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the S3 server at {endpoint} never accepted a write")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def smtp_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The aiosmtpd sink, started once; the directory where it writes each message.
    SMTP_URL points at it."""
    from workers.devstack import commands
    from workers.devstack.servers import free_port, running

    root = tmp_path_factory.mktemp("smtp")
    port = free_port()
    command = commands.smtp_sink(port, root / "mail")
    with running("smtp sink", command, port, root / "sink.log"):
        os.environ["SMTP_URL"] = f"smtp://127.0.0.1:{port}"
        yield root / "mail"


@pytest.fixture
async def s3(worker_resources: Any) -> AsyncIterator[Any]:
    """An S3 client on the test S3 server (as a worker's Resources.s3 would be)."""
    from workers.s3 import s3_client

    async with s3_client(worker_resources.settings) as client:
        yield client


@pytest.fixture
async def worker_resources(
    pool: asyncpg.Pool, stripe_fake: str, s3_server: str, smtp_sink: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    """What a worker process holds (workers.resources.Resources), on the real stand-ins."""
    from workers.resources import Resources
    from workers.settings import load_settings
    from workers.stripe_client import make_stripe_client

    monkeypatch.setenv("STRIPE_API_BASE", stripe_fake)
    settings = load_settings()
    client, http = make_stripe_client(settings)
    yield Resources(settings=settings, pool=pool, stripe=client, stripe_http=http)
    await http.close_async()


@pytest.fixture
async def instance(worker_resources: Any, database_url: str) -> AsyncIterator[tuple[int, str]]:
    """An account owning an instance whose database holds 20,000 orders and 300 customers;
    (instance id, database URL)."""
    from tests.instances import add_instance
    from workers.db import ensure_database

    pool = worker_resources.pool
    url = database_url.rsplit("/", 1)[0] + f"/backup_src_{secrets.token_hex(4)}"
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    await conn.execute(
        "CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 20000) g;"
        "CREATE TABLE customers AS SELECT g AS id FROM generate_series(1, 300) g;"
    )
    await conn.close()
    yield await add_instance(pool, url, "shop"), url
    await drop_database(url)


@pytest.fixture
async def accounts_db(database_url: str) -> AsyncIterator[Any]:
    """`await accounts_db(n)`: a fresh database with n accounts; one in 100 gets a 451 once from a
    faulty sink, one in 250 a 550, one in 10 is disabled."""
    from tests.breach_setup import Bindery

    created: list[Bindery] = []

    async def make(count: int) -> Bindery:
        url = database_url.rsplit("/", 1)[0] + f"/breach_{secrets.token_hex(4)}"
        await new_bindery_database(url)
        pool = await create_pool(url, max_size=4)
        await pool.execute(
            """INSERT INTO accounts (email, password_hash, first_name, status)
               SELECT 'c' || g || CASE WHEN g % 250 = 0 THEN '+reject' WHEN g % 100 = 0 THEN '+tempfail'
                                       ELSE '' END || '@exemple.fr',
                      'x', 'Client ' || g, CASE WHEN g % 10 = 0 THEN 'disabled' ELSE 'active' END
                 FROM generate_series(1, $1::int) g""",
            count,
        )
        created.append(Bindery(url, pool))
        return created[-1]

    yield make
    for one in created:
        await one.pool.close()
        await drop_database(one.url)
