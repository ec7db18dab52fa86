"""Can we reach Postgres and the broker? One clear line when not, ending with how to
start the service when the caller knows (`start`: the development machine's command)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import asyncpg


def _start_with(start: str | None) -> str:
    return f" Start it with: {start}" if start else ""


def _where(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


async def postgres_problem(dsn: str, start: str | None = None) -> str | None:
    """None when Postgres answers (even if the database does not exist yet)."""
    host, port = _where(dsn, 5432)
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except asyncpg.InvalidCatalogNameError:
        return None  # the server is up; `migrate --create-database` creates the database
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        return (
            f"cannot reach PostgreSQL at DATABASE_URL ({host}:{port}): {type(error).__name__}."
            + _start_with(start)
        )
    await conn.close()
    return None


def broker_problem(url: str, start_redis: str | None = None, start_rabbitmq: str | None = None) -> str | None:
    rabbit = url.startswith("amqp")
    host, port = _where(url, 5672 if rabbit else 6379)
    try:
        with socket.create_connection((host, port), timeout=3):
            return None
    except OSError as error:
        return (
            f"cannot reach the broker at BROKER_URL ({host}:{port}): {error.strerror or error}."
            + _start_with(start_rabbitmq if rabbit else start_redis)
        )
