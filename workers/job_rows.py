"""The two writes every job makes on its `jobs` row, grouped across a worker's threads.

A worker process runs its actors' coroutines on one event loop. Claims (and, apart,
"done" marks) that arrive while the previous batch is being written go together in
one statement, so each job pays a fraction of a round trip for them instead of two
whole ones. Each caller still waits for its own row's write before going on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from workers.batching import PooledBatcher
from workers.db import Connection


@dataclass(frozen=True)
class Claimed:
    arguments: dict[str, Any]
    attempts: int
    token_id: int | None


class JobRows:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._claims: PooledBatcher[UUID, Claimed | None] = PooledBatcher(pool, self._claim_batch)
        self._finishes: PooledBatcher[tuple[UUID, dict[str, Any]], None] = PooledBatcher(
            pool, self._finish_batch
        )

    async def claim(self, job_id: UUID) -> Claimed | None:
        """Mark the job running; None when it is already finished (or unknown)."""
        return await self._claims.submit(job_id)

    async def finish(self, job_id: UUID, result: dict[str, Any]) -> None:
        """Mark the job done with its result."""
        await self._finishes.submit((job_id, result))

    async def _claim_batch(self, conn: Connection, job_ids: list[UUID]) -> Sequence[Claimed | None]:
        rows = await conn.fetch(
            """
            UPDATE jobs SET status = 'running', attempts = attempts + 1,
                   started_at = coalesce(started_at, now()), updated_at = now()
              -- Only a claim: if a server crash loses it, the job is queued again, as it was.
              -- So its commit need not wait for the WAL flush.
              FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed
             WHERE id = ANY($1::uuid[]) AND status IN ('queued', 'running')
            RETURNING id, arguments, attempts, token_id
            """,
            list(set(job_ids)),
        )
        claimed = {row["id"]: Claimed(row["arguments"], row["attempts"], row["token_id"]) for row in rows}
        return [claimed.get(job_id) for job_id in job_ids]

    async def _finish_batch(
        self, conn: Connection, items: list[tuple[UUID, dict[str, Any]]]
    ) -> Sequence[None]:
        results = dict(items)  # a job twice in one batch (a duplicate message) is written once
        await conn.execute(
            """
            UPDATE jobs SET status = 'done', result = done.result, error = NULL,
                   finished_at = now(), updated_at = now()
              FROM unnest($1::uuid[], $2::jsonb[]) AS done(id, result)
             WHERE jobs.id = done.id AND jobs.status = 'running'
            """,
            list(results),
            list(results.values()),
        )
        return [None] * len(items)
