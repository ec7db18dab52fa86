"""Ids sent together share a broker message (workers/shared_messages.py): jobs
(`job_messages`) and Stripe events (`event_messages`). The ids of one message run side by
side, and a retry of the message runs only those not finished."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from tasks.billing.actors import event_messages, send_events
from tests.billing_events import all_done, event, new_id, stored, subscription
from tests.processes import bindery, eventually
from workers.domains import declare_actors
from workers.errors import JobError
from workers.job_requests import job_messages
from workers.jobs import JobArguments, run_jobs
from workers.queues import policy
from workers.resources import Resources
from workers.settings import load_settings

declare_actors()  # every job, as a worker has them


def test_jobs_sent_together_share_messages_of_their_own_name_split_evenly() -> None:
    pings = [("system.ping", uuid.uuid4()) for _ in range(40)]
    erasures = [("erasure.request", uuid.uuid4()) for _ in range(3)]
    pushes = [("billing.push_account", uuid.uuid4()) for _ in range(2)]
    messages = job_messages(pings[:20] + erasures + pushes + pings[20:])

    by_actor: dict[str, list[tuple[Any, ...]]] = {}
    for message in messages:
        by_actor.setdefault(message.actor_name, []).append(message.args)
    # 40 pings, at most 16 a message: three messages, as even as can be.
    assert policy("default").ids_per_message == 16
    assert sorted(len(args) for args in by_actor["system.ping"]) == [13, 13, 14]
    # Erasures are long: one a message.
    assert [len(args) for args in by_actor["erasure.request"]] == [1, 1, 1]
    assert [len(args) for args in by_actor["billing.push_account"]] == [2]  # up to 32
    sent = Counter(job_id for message in messages for job_id in message.args)
    assert sent == Counter(str(job_id) for _, job_id in pings + erasures + pushes)
    assert {message.queue_name for message in messages if message.actor_name == "erasure.request"} == {
        "erasure"
    }


class Numbered(JobArguments):
    n: int


async def _queued_jobs(pool: asyncpg.Pool, count: int) -> list[uuid.UUID]:
    """Jobs whose arguments are their position: {"n": 0}, {"n": 1}, …"""
    job_ids = [uuid.uuid4() for _ in range(count)]
    await pool.execute(
        """INSERT INTO jobs (id, name, arguments)
           SELECT id, 'test.numbered', jsonb_build_object('n', n - 1)
             FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, n)""",
        job_ids,
    )
    return job_ids


async def test_a_retried_message_runs_only_its_unfinished_jobs(pool: asyncpg.Pool) -> None:
    resources = Resources(settings=load_settings(), pool=pool)
    job_ids = await _queued_jobs(pool, 6)
    runs: Counter[int] = Counter()

    async def third_fails_once(resources: Resources, arguments: Numbered) -> dict[str, int]:
        runs[arguments.n] += 1
        if arguments.n == 2 and runs[2] == 1:
            raise JobError("instance 12 is unreachable")
        return {"run": runs[arguments.n]}

    with pytest.raises(JobError):
        await run_jobs(resources, job_ids, third_fails_once, Numbered, max_retries=3)
    rows = [await pool.fetchrow("SELECT status, attempts, error FROM jobs WHERE id = $1", j) for j in job_ids]
    assert [(r["status"], r["attempts"]) for r in rows] == [("done", 1)] * 2 + [("queued", 1)] + [
        ("done", 1)
    ] * 3
    assert rows[2]["error"] == "instance 12 is unreachable"

    # Dramatiq's retry of the same message: only the job that failed runs again.
    await run_jobs(resources, job_ids, third_fails_once, Numbered, max_retries=3)
    assert runs == Counter({0: 1, 1: 1, 2: 2, 3: 1, 4: 1, 5: 1})
    rows = [
        await pool.fetchrow("SELECT status, attempts, result FROM jobs WHERE id = $1", j) for j in job_ids
    ]
    assert [(r["status"], r["attempts"]) for r in rows] == [("done", 1)] * 2 + [("done", 2)] + [
        ("done", 1)
    ] * 3
    assert [r["result"] for r in rows] == [{"run": 1}] * 2 + [{"run": 2}] + [{"run": 1}] * 3


async def test_a_job_out_of_retries_fails_alone_and_the_message_succeeds(pool: asyncpg.Pool) -> None:
    resources = Resources(settings=load_settings(), pool=pool)
    job_ids = await _queued_jobs(pool, 4)

    async def second_breaks(resources: Resources, arguments: Numbered) -> dict[str, bool]:
        if arguments.n == 1:
            raise JobError("instance 12 is unreachable")
        return {"ok": True}

    await run_jobs(resources, job_ids, second_breaks, Numbered, max_retries=0)  # does not raise
    rows = [await pool.fetchrow("SELECT status FROM jobs WHERE id = $1", j) for j in job_ids]
    assert [r["status"] for r in rows] == ["done", "failed", "done", "done"]


def test_events_stored_together_share_messages_split_evenly() -> None:
    assert policy("billing").ids_per_message == 32
    event_ids = [new_id("evt") for _ in range(70)]
    messages = event_messages(event_ids)
    assert sorted(len(message.args) for message in messages) == [23, 23, 24]
    assert Counter(i for message in messages for i in message.args) == Counter(event_ids)
    assert [len(message.args) for message in event_messages(event_ids[:1])] == [1]


async def test_a_worker_applies_every_event_of_a_shared_message(
    pool: asyncpg.Pool, redis_client: redis.Redis, tmp_path: Path
) -> None:
    subs = [new_id("sub") for _ in range(40)]
    items = [
        event("customer.subscription.created", subscription(sub, new_id("cus"), "active")) for sub in subs
    ]
    ids = await stored(pool, *items)
    await send_events(ids)
    assert redis_client.llen("bindery:billing") == 2  # 40 events, at most 32 a message

    with bindery(
        "worker", "--processes", "1", "--threads", "1", "--queues", "billing", log=tmp_path / "w.log"
    ):
        await eventually(lambda: all_done(pool, ids), 30, "every event applied")
    rows = await pool.fetch("SELECT id, status FROM subscriptions WHERE id = ANY($1)", subs)
    assert {row["id"]: row["status"] for row in rows} == dict.fromkeys(subs, "active")
