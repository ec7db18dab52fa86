"""Audit records written through `AuditLog`: concurrent ones share a transaction, each
caller learns when its own record is committed, and a bad record fails its batch only."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from workers.audit_log import AuditLog, AuditRecord


async def test_concurrent_records_are_written_together_and_each_returns_its_time(
    pool: asyncpg.Pool,
) -> None:
    audit = AuditLog(pool)
    subject = str(uuid.uuid4())  # this test's rows, apart from any other test's
    records = [AuditRecord("system", f"test.audit.{i}", "test", subject, {"n": i}) for i in range(40)]

    times = await asyncio.gather(*(audit.record(r) for r in records))

    rows = await pool.fetch(
        "SELECT actor, action, details, at, xmin::text AS tx FROM audit_log WHERE subject_id = $1", subject
    )
    assert sorted((r["action"], r["details"]["n"]) for r in rows) == sorted(
        (r.action, r.details["n"]) for r in records if r.details
    )
    at_by_action = {r["action"]: r["at"] for r in rows}
    assert times == [at_by_action[r.action] for r in records]
    # All 40 arrived while the first was being written: at most two transactions.
    assert len({r["tx"] for r in rows}) <= 2


async def test_a_record_the_table_refuses_fails_only_its_batch(pool: asyncpg.Pool) -> None:
    audit = AuditLog(pool)
    subject = str(uuid.uuid4())

    with pytest.raises(asyncpg.NotNullViolationError):
        await audit.record(AuditRecord(None, "test.audit.bad", "test", subject))
    await audit.record(AuditRecord("system", "test.audit.good", "test", subject))

    actions = await pool.fetch("SELECT action FROM audit_log WHERE subject_id = $1", subject)
    assert [r["action"] for r in actions] == ["test.audit.good"]
