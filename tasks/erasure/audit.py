"""The audit trail of erasures: who asked, each step, the outcome. Ids only."""

from __future__ import annotations

from typing import Any

import asyncpg

from workers.db import Connection


async def audit(
    conn: asyncpg.Pool | Connection, actor: str, action: str, request_id: int, details: dict[str, Any]
) -> None:
    await conn.execute(
        """INSERT INTO audit_log (actor, action, subject_type, subject_id, details)
           VALUES ($1, $2, 'erasure_request', $3, $4)""",
        actor,
        action,
        str(request_id),
        details,
    )
