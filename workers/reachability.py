"""Can we reach Postgres and the broker? One clear line when not, saying how to fix it."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import asyncpg

# The machine's own commands (see the README's "Local services").
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)
START_RABBITMQ = "rabbitmq-server -detached"


def _where(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


async def postgres_problem(dsn: str) -> str | None:
    """None when Postgres answers (even if the database does not exist yet)."""
    host, port = _where(dsn, 5432)
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except asyncpg.InvalidCatalogNameError:
        return None  # the server is up; `migrate --create-database` creates the database
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        return (
            f"cannot reach PostgreSQL at DATABASE_URL ({host}:{port}): {type(error).__name__}. "
            f"Start it with: {START_POSTGRES}"
        )
    await conn.close()
    return None


def broker_problem(url: str) -> str | None:
    rabbit = url.startswith("amqp")
    host, port = _where(url, 5672 if rabbit else 6379)
    try:
        with socket.create_connection((host, port), timeout=3):
            return None
    except OSError as error:
        how = START_RABBITMQ if rabbit else START_REDIS
        return (
            f"cannot reach the broker at BROKER_URL ({host}:{port}): {error.strerror or error}. "
            f"Start it with: {how}"
        )
