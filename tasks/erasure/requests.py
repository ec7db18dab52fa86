"""Asking for an erasure, cancelling it within the grace period, and reading where it is."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from tasks.erasure.audit import audit
from tasks.erasure.steps import RETENTION, STEPS
from tasks.privacy import close_request, open_request
from workers.db import Connection
from workers.errors import JobError
from workers.leases import abandoned


class UnknownAccount(JobError):
    pass


class NotCancellable(JobError):
    pass


async def request_erasure(
    conn: Connection, account_id: int, *, grace: timedelta, requested_by: str, now: datetime | None = None
) -> tuple[asyncpg.Record, bool]:
    """Disable the account and open its request (or return the open one); (request, created).

    The account is disabled in the same transaction: from the moment the request exists,
    the customer area refuses the login.
    """
    async with conn.transaction():
        account = await conn.fetchval("SELECT id FROM accounts WHERE id = $1 FOR UPDATE", account_id)
        if account is None:
            raise UnknownAccount(f"unknown account {account_id}")
        existing = await conn.fetchrow(
            "SELECT * FROM erasure_requests WHERE account_id = $1 AND state IN ('pending', 'running')",
            account_id,
        )
        if existing is not None:
            return existing, False
        await conn.execute(
            "UPDATE accounts SET status = 'disabled', updated_at = now() WHERE id = $1", account_id
        )
        request = await conn.fetchrow(
            """
            INSERT INTO erasure_requests (account_id, requested_by, requested_at, run_after)
            VALUES ($1, $2, coalesce($3, now()), coalesce($3, now()) + $4::interval)
            RETURNING *
            """,
            account_id,
            requested_by,
            now,
            grace,
        )
        assert request is not None
        await audit(conn, requested_by, "erasure.requested", request["id"], {"account_id": account_id})
        if requested_by != "reapply":  # a restore's replay of an old request is no new one
            await open_request(
                conn,
                "erasure",
                account_id,
                received_by=requested_by,
                received_at=request["requested_at"],
                erasure_request_id=request["id"],
            )
    return request, True


def summary(request: asyncpg.Record, created: bool, notice: str | None = None) -> dict[str, Any]:
    """What asking for an erasure answers: the request, its state, when it runs, and
    what became of the notice email this time ('sent', 'refused 550', 'not a mailbox';
    None: none was sent now)."""
    return {
        "request_id": request["id"],
        "state": request["state"],
        "run_after": request["run_after"].isoformat(),
        "created": created,
        "notice": notice,
    }


async def cancel_erasure(conn: Connection, account_id: int, *, cancelled_by: str) -> asyncpg.Record:
    """Cancel the account's pending request before its grace period ends; re-enable the account."""
    async with conn.transaction():
        request = await conn.fetchrow(
            """SELECT * FROM erasure_requests
                WHERE account_id = $1 AND state IN ('pending', 'running') FOR UPDATE""",
            account_id,
        )
        if request is None:
            raise NotCancellable(f"account {account_id} has no pending erasure")
        if request["state"] != "pending" or request["run_after"] <= await conn.fetchval("SELECT now()"):
            raise NotCancellable(f"erasure request {request['id']} has begun; it can no longer be cancelled")
        cancelled = await conn.fetchrow(
            "UPDATE erasure_requests SET state = 'cancelled', finished_at = now() WHERE id = $1 RETURNING *",
            request["id"],
        )
        await conn.execute(
            "UPDATE accounts SET status = 'active', updated_at = now() WHERE id = $1", account_id
        )
        await audit(conn, cancelled_by, "erasure.cancelled", request["id"], {"account_id": account_id})
        await close_request(
            conn,
            erasure_request_id=request["id"],
            outcome="cancelled within the grace period",
            by=cancelled_by,
        )
    assert cancelled is not None
    return cancelled


async def due_requests(conn: asyncpg.Pool | Connection, limit: int = 1000) -> list[int]:
    """Requests whose grace has ended, and running ones whose worker's lease ran out."""
    rows = await conn.fetch(
        f"""
        SELECT id FROM erasure_requests
         WHERE (state = 'pending' AND run_after <= now()) OR {abandoned("running")}
         ORDER BY run_after LIMIT $1
        """,  # nosec B608: workers.leases' fixed predicates, no input
        limit,
    )
    return [row["id"] for row in rows]


async def request_status(conn: Connection, request_id: int) -> dict[str, Any] | None:
    request = await conn.fetchrow("SELECT * FROM erasure_requests WHERE id = $1", request_id)
    if request is None:
        return None
    steps = await conn.fetch(
        """SELECT step, started_at, finished_at, attempts, error, counts
             FROM erasure_steps WHERE request_id = $1""",
        request_id,
    )
    by_name = {step["step"]: step for step in steps}
    rows_counts = by_name["rows"]["counts"] if "rows" in by_name else {}
    verified = "verify" in by_name and by_name["verify"]["finished_at"] is not None
    return {
        **{key: _plain(value) for key, value in request.items() if key != "report"},
        "instance_ids": (request["report"] or {}).get("instance_ids", []),
        "request_notice": (request["report"] or {}).get("request_notice"),
        "steps": [
            {"step": name, **{key: _plain(value) for key, value in by_name[name].items() if key != "step"}}
            if name in by_name
            else {"step": name, "started_at": None, "finished_at": None, "attempts": 0}
            for name, _ in STEPS
        ],
        "retained": {
            "invoices": {
                "count": rows_counts.get("invoices_unlinked", 0),
                "legal_basis": RETENTION["invoices"],
            }
        },
        "verification": "passed" if verified else "not yet",
    }


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
