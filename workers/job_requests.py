"""Rows of the `jobs` table: accepting requests (idempotently, in batches), reading them,
and re-enqueueing those the broker lost.

"Enqueue after commit": a message is sent only for a row that is committed, and a row
whose message got lost is found again by `requeue_stale_jobs`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
import dramatiq

from workers.db import Connection
from workers.enqueue import enqueue_many, new_messages
from workers.ids import uuid4_batch
from workers.jobs import JOBS
from workers.leases import lease_for
from workers.shared_messages import shared_calls

Enqueue = Callable[[list[tuple[str, UUID]]], Awaitable[None]]


@dataclass(frozen=True)
class Submission:
    name: str
    arguments: dict[str, Any]
    token_id: int | None  # None: asked for from the console, by an operator
    idempotency_key: str | None


@dataclass(frozen=True)
class Accepted:
    job_id: UUID
    status: str
    created: bool


class IdempotencyConflict(Exception):
    """The idempotency key was used before, with another job or other arguments."""


async def insert_submissions(
    conn: Connection | asyncpg.Pool, submissions: list[Submission]
) -> list[Accepted | IdempotencyConflict]:
    """Insert a batch of job requests in one statement; replays of a key return the first job."""
    ids = uuid4_batch(len(submissions))
    inserted = {
        row["id"]
        for row in await conn.fetch(
            """
            INSERT INTO jobs (id, name, arguments, token_id, idempotency_key)
            SELECT id, name, arguments::jsonb, token_id, idempotency_key
              FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[])
                   AS incoming(id, name, arguments, token_id, idempotency_key)
            ON CONFLICT (token_id, idempotency_key) DO NOTHING
            RETURNING id
            """,
            ids,
            [s.name for s in submissions],
            [json.dumps(s.arguments) for s in submissions],
            [s.token_id for s in submissions],
            [s.idempotency_key for s in submissions],
        )
    }
    replays = [s for job_id, s in zip(ids, submissions, strict=True) if job_id not in inserted]
    earlier: dict[tuple[int | None, str], asyncpg.Record] = {}
    if replays:
        rows = await conn.fetch(
            """
            SELECT id, name, arguments, status, token_id, idempotency_key FROM jobs
             WHERE (token_id, idempotency_key) IN
                   (SELECT * FROM unnest($1::bigint[], $2::text[]))
            """,
            [s.token_id for s in replays],
            [s.idempotency_key for s in replays],
        )
        earlier = {(row["token_id"], row["idempotency_key"]): row for row in rows}

    results: list[Accepted | IdempotencyConflict] = []
    for job_id, submission in zip(ids, submissions, strict=True):
        if job_id in inserted:
            results.append(Accepted(job_id, "queued", created=True))
            continue
        assert submission.idempotency_key is not None  # only keyed rows can conflict
        first = earlier[(submission.token_id, submission.idempotency_key)]
        if first["name"] == submission.name and first["arguments"] == submission.arguments:
            results.append(Accepted(first["id"], first["status"], created=False))
        else:
            results.append(IdempotencyConflict("idempotency key already used with other arguments"))
    return results


async def fetch_job(conn: asyncpg.Connection | asyncpg.Pool, job_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """
        SELECT id, name, status, attempts, result, error, token_id,
               created_at, updated_at, started_at, finished_at
          FROM jobs WHERE id = $1
        """,
        job_id,
    )


async def requeue_stale_jobs(
    conn: asyncpg.Connection | asyncpg.Pool,
    enqueue: Enqueue,
    *,
    queued_for: timedelta = timedelta(minutes=1),
    limit: int = 1000,
) -> int:
    """Re-send jobs queued too long, or running past their queue's time limit (a worker died).

    Safe to repeat: the actor skips a job that is already done, and the row's
    `updated_at` moves so the same job is not re-sent again at once.
    """
    names = list(JOBS)
    leases = [lease_for(JOBS[name].queue).total_seconds() for name in names]
    rows = await conn.fetch(
        """
        UPDATE jobs SET updated_at = now()
         WHERE id IN (
               SELECT jobs.id FROM jobs
                 JOIN unnest($2::text[], $3::float8[]) AS lease(name, seconds) USING (name)
                WHERE (jobs.status = 'queued' AND jobs.updated_at < now() - $1::interval)
                   OR (jobs.status = 'running'
                       AND jobs.updated_at < now() - make_interval(secs => lease.seconds))
                ORDER BY jobs.updated_at
                LIMIT $4
                  FOR UPDATE SKIP LOCKED)
        RETURNING name, id
        """,
        queued_for,
        names,
        leases,
        limit,
    )
    if rows:
        await enqueue([(row["name"], row["id"]) for row in rows])
    return len(rows)


def job_messages(jobs: list[tuple[str, UUID]]) -> list[dramatiq.Message[object]]:
    """Messages carrying only job ids; jobs of the same name sent together share them."""
    ids_by_name: dict[str, list[str]] = {}
    for name, job_id in jobs:
        ids_by_name.setdefault(name, []).append(str(job_id))
    return new_messages(
        [call for name, ids in ids_by_name.items() for call in shared_calls(JOBS[name].actor, ids)]
    )


def send_jobs(jobs: list[tuple[str, UUID]]) -> None:
    """Send the jobs' messages. Blocking: call it from a thread in async code."""
    if jobs:
        enqueue_many(JOBS[jobs[0][0]].actor.broker, job_messages(jobs))


async def send_jobs_in_thread(jobs: list[tuple[str, UUID]]) -> None:
    await asyncio.to_thread(send_jobs, jobs)
