"""The one writer of `audit_log`: records written inside the caller's transaction
(`write_audit`), and records an actor writes on their own, grouped across a worker's
threads (`AuditLog`).

Each audit record written outside a transaction was a statement and a commit of its
own: as much of the database's work as a job's own two writes together. Records that
arrive while the previous batch is being written go in one INSERT; each caller still
waits until its record is committed. Records that must commit with other writes (an
erasure request and its audit, say) are written inside that transaction instead, and
a job's record that it ran rides with its "done" mark (`Done` in workers/jobs.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from workers.batching import PooledBatcher
from workers.db import Connection


@dataclass(frozen=True)
class AuditRecord:
    """Who did what to which subject; ids only, never personal data."""

    actor: str
    action: str
    subject_type: str | None = None
    subject_id: str | None = None
    details: dict[str, Any] | None = None


def as_columns(records: Sequence[AuditRecord]) -> list[list[Any]]:
    """The records as the arrays an `unnest` of (actor, action, subject_type, subject_id,
    details) takes: text, text, text, text, jsonb."""
    return [
        [r.actor for r in records],
        [r.action for r in records],
        [r.subject_type for r in records],
        [r.subject_id for r in records],
        [r.details or {} for r in records],
    ]


async def write_audit(conn: asyncpg.Pool | Connection, record: AuditRecord) -> None:
    """One record, inside the caller's transaction when `conn` is in one: it commits with
    the writes it records, or not at all."""
    await conn.execute(
        """INSERT INTO audit_log (actor, action, subject_type, subject_id, details)
           VALUES ($1, $2, $3, $4, $5)""",
        record.actor,
        record.action,
        record.subject_type,
        record.subject_id,
        record.details or {},
    )


class AuditLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._records: PooledBatcher[AuditRecord, datetime] = PooledBatcher(pool, self._write_batch)

    async def record(self, record: AuditRecord) -> datetime:
        """Write the record; return its `at` once it is committed."""
        return await self._records.submit(record)

    async def _write_batch(self, conn: Connection, records: list[AuditRecord]) -> Sequence[datetime]:
        # `at` defaults to now(), the transaction's start: one value for the whole batch.
        at: datetime = await conn.fetchval(
            """
            INSERT INTO audit_log (actor, action, subject_type, subject_id, details)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[])
            RETURNING at
            """,
            *as_columns(records),
        )
        return [at] * len(records)
