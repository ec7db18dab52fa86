"""Fault: the billing worker killed with SIGKILL in the middle of a Stripe event.

A `bindery worker` killed with SIGKILL in the middle of a Stripe event: the event is
applied exactly once in effect, by the next worker, once the dead one's lease ends."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import asyncpg
import redis

from tasks.billing.actors import resend_stale_events, send_events
from tasks.billing.inbox import parse_event, store_events
from tests.billing_events import all_done, event, new_id, stored, subscription
from tests.processes import bindery, eventually
from workers.db import connect


async def _waiting_on_a_lock(pool: asyncpg.Pool) -> bool:
    return bool(
        await pool.fetchval(
            """SELECT count(*) FROM pg_stat_activity
                WHERE wait_event_type = 'Lock' AND application_name = 'bindery-worker'"""
        )
    )


async def test_a_worker_killed_mid_event_leaves_it_to_the_next_one(
    pool: asyncpg.Pool, database_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    sub = new_id("sub")
    item = event("customer.subscription.created", subscription(sub, new_id("cus"), "active"))
    await store_events(pool, [parse_event(json.dumps(item).encode())])

    async def state() -> tuple[str, int]:
        row = await pool.fetchrow("SELECT state, attempts FROM stripe_events WHERE id = $1", item["id"])
        assert row is not None
        return row["state"], row["attempts"]

    # Hold the subscription's ordering row so that the worker stops half-way through applying it.
    await pool.execute(
        """INSERT INTO stripe_objects (object_id, last_event_id, last_event_created)
           VALUES ($1, 'evt_0', 'epoch')""",
        sub,
    )
    holder = await connect(database_url)
    await holder.execute("BEGIN")
    await holder.execute("SELECT 1 FROM stripe_objects WHERE object_id = $1 FOR UPDATE", sub)
    worker_args = ("worker", "--processes", "1", "--threads", "1")
    with bindery(*worker_args, log=tmp_path / "worker-1.log") as worker:
        await send_events([item["id"]])
        await eventually(lambda: _waiting_on_a_lock(pool), 30, "the worker to be inside the event")
        assert await state() == ("processing", 1)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    await holder.close()  # the dead worker's transaction now meets its closed socket and aborts
    await eventually(lambda: _no_worker(pool), 30, "the dead worker's session to end")
    assert await state() == ("processing", 1)
    assert await pool.fetchval("SELECT count(*) FROM subscriptions WHERE id = $1", sub) == 0

    # Five minutes later the lease has run out (moved, not waited for); the reconciler re-sends.
    await pool.execute(
        "UPDATE stripe_events SET lease_until = now() - interval '1 second' WHERE id = $1", item["id"]
    )
    with bindery(*worker_args, log=tmp_path / "worker-2.log"):
        resend_stale_events.send()
        await eventually(lambda: all_done(pool, [item["id"]]), 30, "the next worker to apply the event")
    assert await state() == ("done", 2)
    rows = await pool.fetch("SELECT status FROM subscriptions WHERE id = $1", sub)
    assert [row["status"] for row in rows] == ["active"]
    assert (
        await pool.fetchval("SELECT last_event_id FROM stripe_objects WHERE object_id = $1", sub)
        == item["id"]
    )


async def _no_worker(pool: asyncpg.Pool) -> bool:
    count: int = await pool.fetchval(
        """SELECT count(*) FROM pg_stat_activity
            WHERE datname = current_database() AND application_name = 'bindery-worker'"""
    )
    return count == 0


async def test_a_worker_killed_inside_a_shared_transaction_loses_none_of_its_events(
    pool: asyncpg.Pool, database_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Three events in one message share a transaction; the worker is killed after
    applying the first, while it waits on the second's object. Nothing of the three is
    kept, and the next worker applies each once."""
    stem = new_id("sub")
    subs = [f"{stem}_{n}" for n in "abc"]  # applied in this order (object order)
    items = [
        event("customer.subscription.created", subscription(sub, new_id("cus"), "active")) for sub in subs
    ]
    ids = await stored(pool, *items)
    await pool.execute(
        """INSERT INTO stripe_objects (object_id, last_event_id, last_event_created)
           VALUES ($1, 'evt_0', 'epoch')""",
        subs[1],
    )
    holder = await connect(database_url)
    await holder.execute("BEGIN")
    await holder.execute("SELECT 1 FROM stripe_objects WHERE object_id = $1 FOR UPDATE", subs[1])
    worker_args = ("worker", "--processes", "1", "--threads", "1")
    with bindery(*worker_args, log=tmp_path / "worker-1.log") as worker:
        await send_events(ids)
        assert redis_client.llen("bindery:billing") <= 1  # one message, or already taken
        await eventually(lambda: _waiting_on_a_lock(pool), 30, "the worker to be inside the transaction")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    await holder.close()
    await eventually(lambda: _no_worker(pool), 30, "the dead worker's session to end")
    states = await pool.fetch("SELECT state, attempts FROM stripe_events WHERE id = ANY($1)", ids)
    assert [tuple(row) for row in states] == [("processing", 1)] * 3
    assert await pool.fetchval("SELECT count(*) FROM subscriptions WHERE id = ANY($1)", subs) == 0

    await pool.execute(
        "UPDATE stripe_events SET lease_until = now() - interval '1 second' WHERE id = ANY($1)", ids
    )
    with bindery(*worker_args, log=tmp_path / "worker-2.log"):
        resend_stale_events.send()
        await eventually(lambda: all_done(pool, ids), 30, "the next worker to apply all three")
    states = await pool.fetch("SELECT state, attempts FROM stripe_events WHERE id = ANY($1)", ids)
    assert [tuple(row) for row in states] == [("done", 2)] * 3
    rows = await pool.fetch("SELECT id, status FROM subscriptions WHERE id = ANY($1)", subs)
    assert {row["id"]: row["status"] for row in rows} == dict.fromkeys(subs, "active")
