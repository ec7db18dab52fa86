"""The register of data-subject requests: opened, extended with a reason, closed with an
outcome, listed with the days left. Erasure requests are opened and closed by the erasure
itself (`tasks.erasure` calls `open_request` and `close_request`); an export by its job;
anything else the privacy contact receives is logged by hand (`bindery privacy log`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg

from tasks.privacy.legal_clock import days_left, due_at, end_of, latest_extension
from workers.audit_log import AuditRecord, write_audit
from workers.db import Connection
from workers.errors import JobError

KINDS = ("export", "erasure", "rectification", "objection", "other")
LOGGED_BY_HAND = ("rectification", "objection", "other")
MAX_TEXT = 2000  # a note, a reason or an outcome: a few sentences, never a document


class RegisterError(JobError):
    """A request that cannot be recorded as asked; the message says why."""


def _text(value: str | None, what: str, *, required: bool) -> str | None:
    if value is None or not value.strip():
        if required:
            raise RegisterError(f"{what} is required")
        return None
    if len(value) > MAX_TEXT:
        raise RegisterError(f"{what} is longer than {MAX_TEXT} characters")
    return value.strip()


async def _audit(conn: asyncpg.Pool | Connection, actor: str, action: str, request_id: int) -> None:
    await write_audit(conn, AuditRecord(actor, action, "privacy_request", str(request_id)))


async def open_request(
    conn: Connection,
    kind: str,
    account_id: int,
    *,
    received_by: str,
    received_at: datetime | None = None,
    note: str | None = None,
    erasure_request_id: int | None = None,
    export_job_id: UUID | None = None,
) -> int:
    """Record a request received now (or at `received_at`); its id. Inside the caller's
    transaction, so that a request and its register row exist together or not at all.
    The request an export job answers is recorded once, however often the job runs."""
    if kind not in KINDS:
        raise RegisterError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    received = received_at or await conn.fetchval("SELECT now()")
    request_id: int | None = await conn.fetchval(
        """INSERT INTO privacy_requests (kind, account_id, received_at, received_by, due_at, note,
                                         erasure_request_id, export_job_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (export_job_id) DO NOTHING RETURNING id""",
        kind,
        account_id,
        received,
        received_by,
        due_at(received),
        _text(note, "the note", required=False),
        erasure_request_id,
        export_job_id,
    )
    if request_id is None:
        return int(
            await conn.fetchval("SELECT id FROM privacy_requests WHERE export_job_id = $1", export_job_id)
        )
    await _audit(conn, received_by, "privacy.opened", request_id)
    return request_id


async def log_request(pool: asyncpg.Pool, kind: str, account_id: int, note: str | None, by: str) -> int:
    """A request received by the privacy contact, logged by hand."""
    if kind not in LOGGED_BY_HAND:
        raise RegisterError(
            f"kind {kind!r} is not logged by hand; one of {', '.join(LOGGED_BY_HAND)}"
            " (exports and erasures are recorded when they are asked for)"
        )
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)", account_id):
            raise RegisterError(f"unknown account {account_id}")
        return await open_request(conn, kind, account_id, received_by=by, note=note)


async def extend_request(pool: asyncpg.Pool, request_id: int, until: date, reason: str, by: str) -> datetime:
    """Move an open request's deadline to the end of `until`, at most three months after
    its receipt; the new deadline."""
    reason_text = _text(reason, "the reason", required=True)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT * FROM privacy_requests WHERE id = $1 FOR UPDATE", request_id)
        if row is None:
            raise RegisterError(f"no privacy request {request_id}")
        if row["state"] != "open":
            raise RegisterError(f"privacy request {request_id} is closed")
        deadline, latest = end_of(until), latest_extension(row["received_at"])
        if deadline <= row["deadline"]:
            raise RegisterError(f"{until} is not later than the request's deadline")
        if deadline > latest:
            raise RegisterError(
                f"{until} is past the latest extension the law allows (two more months): {latest.date()}"
            )
        await conn.execute(
            "UPDATE privacy_requests SET extended_until = $2, extension_reason = $3 WHERE id = $1",
            request_id,
            deadline,
            reason_text,
        )
        await _audit(conn, by, "privacy.extended", request_id)
    return deadline


async def close_request(
    conn: asyncpg.Pool | Connection,
    *,
    outcome: str,
    by: str,
    request_id: int | None = None,
    erasure_request_id: int | None = None,
) -> bool:
    """Close an open request (by its id, or by the erasure request it records) with its
    outcome; False when there was no such open request."""
    closed = await conn.fetchval(
        """UPDATE privacy_requests SET state = 'closed', closed_at = now(), outcome = $3
            WHERE state = 'open' AND (id = $1 OR erasure_request_id = $2) RETURNING id""",
        request_id,
        erasure_request_id,
        _text(outcome, "the outcome", required=True),
    )
    if closed is not None:
        await _audit(conn, by, "privacy.closed", closed)
    return closed is not None


async def list_requests(pool: asyncpg.Pool, *, open_only: bool) -> list[dict[str, Any]]:
    """The register, oldest first, each with its deadline and the days left to it."""
    rows = await pool.fetch(
        """SELECT id, kind, account_id, received_at, due_at, extended_until, extension_reason, deadline,
                  state, closed_at, outcome, now() AS now
             FROM privacy_requests WHERE state = 'open' OR NOT $1 ORDER BY received_at, id""",
        open_only,
    )
    listed = []
    for row in rows:
        entry = dict(row)
        now = entry.pop("now")
        entry["days_left"] = days_left(row["deadline"], now) if row["state"] == "open" else None
        listed.append(entry)
    return listed
