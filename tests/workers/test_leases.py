"""The lease every claim uses (workers/leases.py): fenced renewal and release, and a
heartbeat that keeps a claim past its lease and stops once the claim is gone."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from tests.processes import eventually
from workers.leases import Held, heartbeat, lease_for
from workers.queues import policy


@pytest.fixture
async def table(pool: asyncpg.Pool) -> AsyncIterator[str]:
    name = f"lease_probe_{secrets.token_hex(3)}"
    await pool.execute(
        f"CREATE TABLE {name} (id int PRIMARY KEY, attempts int NOT NULL, lease_until timestamptz)"
    )
    await pool.execute(f"INSERT INTO {name} VALUES (1, 1, now() + interval '1 second')")
    yield name
    await pool.execute(f"DROP TABLE {name}")


async def _lease_left(pool: asyncpg.Pool, table: str) -> float | None:
    left = await pool.fetchval(f"SELECT extract(epoch FROM lease_until - now()) FROM {table} WHERE id = 1")
    return float(left) if left is not None else None


async def test_only_the_holder_of_the_current_claim_renews_or_releases(
    pool: asyncpg.Pool, table: str
) -> None:
    mine = Held(table, "id", 1, "attempts", 1, timedelta(minutes=5))
    assert await mine.renew(pool)
    assert (await _lease_left(pool, table) or 0) > 200
    # Another worker takes the row over (its claim bumps the token).
    await pool.execute(f"UPDATE {table} SET attempts = 2, lease_until = now() + interval '1 minute'")
    assert not await mine.renew(pool)
    await mine.release(pool)
    assert (await _lease_left(pool, table) or 0) > 30  # the new holder's lease is untouched
    theirs = Held(table, "id", 1, "attempts", 2)
    await theirs.release(pool)
    assert await _lease_left(pool, table) is None
    assert not await theirs.renew(pool)  # released: a claim again, not a renewal


async def test_a_heartbeat_keeps_the_claim_past_its_lease_and_stops_once_it_is_gone(
    pool: asyncpg.Pool, table: str
) -> None:
    held = Held(table, "id", 1, "attempts", 1, timedelta(seconds=0.6))
    async with heartbeat(pool, held) as beats:
        # The row's first lease was a second: renewed, it runs out later than that.
        first = await pool.fetchval(f"SELECT lease_until FROM {table}")
        await eventually(
            lambda: pool.fetchval(
                f"SELECT lease_until > $1::timestamptz + interval '1 second' FROM {table}", first
            ),
            10,
            "the lease renewed past its first end",
        )
        assert not beats.lost.is_set()
        await pool.execute(f"UPDATE {table} SET attempts = 2, lease_until = now() + interval '1 hour'")
        taken = await pool.fetchval(f"SELECT lease_until FROM {table}")
        await asyncio.wait_for(beats.lost.wait(), 10)
    # The beat that found the claim gone changed nothing: the new holder's lease stands.
    assert await pool.fetchval(f"SELECT lease_until FROM {table}") == taken


def test_an_unrenewed_lease_outlasts_the_queue_s_time_limit() -> None:
    for queue in ("default", "billing", "erasure", "backups", "mail"):
        assert lease_for(queue) > timedelta(seconds=policy(queue).time_limit_s)
