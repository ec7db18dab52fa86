"""The two writes every job makes on its `jobs` row, grouped across a worker's threads.

A worker process runs its actors' coroutines on one event loop. Claims (and, apart,
"done" marks) that arrive while the previous batch is being written go together in
one statement, so each job pays a fraction of a round trip for them instead of two
whole ones. Each caller still waits for its own row's write before going on. A job's
audit records may ride with its "done" mark: one statement and commit for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from workers.audit_log import AuditRecord, as_columns
from workers.batching import PooledBatcher
from workers.db import Connection

CLAIM = """
    UPDATE jobs SET status = 'running', attempts = attempts + 1,
           started_at = coalesce(started_at, now()), updated_at = now()
      -- Only a claim: if a server crash loses it, the job is queued again, as it was.
      -- So its commit need not wait for the WAL flush.
      FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed
     -- "Not finished", rather than the unfinished-jobs index's own predicate (queued or
     -- running): with that, a planner whose statistics predate a burst of requests read
     -- the whole index beside the primary key, for every batch.
     WHERE id = ANY($1::uuid[]) AND status NOT IN ('done', 'failed')
    RETURNING id, arguments, attempts, token_id
"""

FINISH = """
    WITH done AS (
        UPDATE jobs SET status = 'done', result = done.result, error = NULL,
               finished_at = now(), updated_at = now()
          FROM unnest($1::uuid[], $2::jsonb[]) AS done(id, result)
         WHERE jobs.id = done.id AND jobs.status = 'running'
        RETURNING jobs.id
    )
    -- Only the records of the jobs this statement marks done: a job that was finished
    -- meanwhile (by a duplicate message) got its records with that mark.
    INSERT INTO audit_log (actor, action, subject_type, subject_id, details)
    SELECT r.actor, r.action, r.subject_type, r.subject_id, r.details
      FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[])
           AS r(job_id, actor, action, subject_type, subject_id, details)
     WHERE r.job_id IN (SELECT id FROM done)
"""


@dataclass(frozen=True)
class Claimed:
    arguments: dict[str, Any]
    attempts: int
    token_id: int | None


@dataclass(frozen=True)
class _Finish:
    job_id: UUID
    result: dict[str, Any]
    audit: tuple[AuditRecord, ...]


class JobRows:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._claims: PooledBatcher[UUID, Claimed | None] = PooledBatcher(
            pool, self._claim_batch, custom_plans=True
        )
        self._finishes: PooledBatcher[_Finish, None] = PooledBatcher(
            pool, self._finish_batch, custom_plans=True
        )

    async def claim(self, job_id: UUID) -> Claimed | None:
        """Mark the job running; None when it is already finished (or unknown)."""
        return await self._claims.submit(job_id)

    async def finish(self, job_id: UUID, result: dict[str, Any], audit: Sequence[AuditRecord] = ()) -> None:
        """Mark the job done with its result; its audit records commit with the mark."""
        await self._finishes.submit(_Finish(job_id, result, tuple(audit)))

    async def _claim_batch(self, conn: Connection, job_ids: list[UUID]) -> Sequence[Claimed | None]:
        rows = await conn.fetch(CLAIM, list(set(job_ids)))
        claimed = {row["id"]: Claimed(row["arguments"], row["attempts"], row["token_id"]) for row in rows}
        return [claimed.get(job_id) for job_id in job_ids]

    async def _finish_batch(self, conn: Connection, items: list[_Finish]) -> Sequence[None]:
        # A job twice in one batch (a duplicate message) is marked once, its records written once.
        done = list({item.job_id: item for item in items}.values())
        audited = [(item.job_id, record) for item in done for record in item.audit]
        await conn.execute(
            FINISH,
            [item.job_id for item in done],
            [item.result for item in done],
            [job_id for job_id, _ in audited],
            *as_columns([record for _, record in audited]),
        )
        return [None] * len(items)
