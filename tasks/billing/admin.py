"""`bindery stripe events` and `bindery stripe retry`: look at the inbox, retry failures."""

from __future__ import annotations

from typing import Any

from workers.db import Connection


async def list_events(conn: Connection, *, failed_only: bool, limit: int = 100) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """
        SELECT id, type, object_id, state, attempts, last_error, created, received_at, processed_at
          FROM stripe_events
         WHERE NOT $1 OR state = 'failed'
         ORDER BY received_at DESC LIMIT $2
        """,
        failed_only,
        limit,
    )
    return [
        {key: (value.isoformat() if hasattr(value, "isoformat") else value) for key, value in row.items()}
        for row in rows
    ]


async def reset_failed(conn: Connection, event_id: str | None) -> list[str]:
    """Put failed events (one, or all) back to `received` with fresh attempts; return their ids."""
    rows = await conn.fetch(
        """
        UPDATE stripe_events SET state = 'received', attempts = 0, last_error = NULL
         WHERE state = 'failed' AND ($1::text IS NULL OR id = $1)
        RETURNING id
        """,
        event_id,
    )
    return [row["id"] for row in rows]
