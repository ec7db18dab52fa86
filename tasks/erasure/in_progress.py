"""Whether an account's erasure has begun, for the domains that must not undo it."""

from __future__ import annotations

import asyncpg

from workers.db import Connection


async def erasure_has_begun(conn: Connection, instance_id: int) -> bool:
    """Whether the erasure of the instance's account is running. One in its grace period
    is not: it may still be cancelled. Called inside the caller's transaction, so the
    answer holds under the caller's locks."""
    begun: bool = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM erasure_requests r JOIN instances i ON i.account_id = r.account_id
                           WHERE i.id = $1 AND r.state = 'running')""",
        instance_id,
    )
    return begun


async def open_erasure(conn: asyncpg.Pool | Connection, account_id: int) -> int | None:
    """The account's erasure request that is waiting out its grace or running, if any:
    from then on nothing may copy the account's data elsewhere (an export refuses)."""
    request_id: int | None = await conn.fetchval(
        "SELECT id FROM erasure_requests WHERE account_id = $1 AND state IN ('pending', 'running')",
        account_id,
    )
    return request_id
