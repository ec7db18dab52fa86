"""How long billing keeps what Stripe sent: run daily by `system.prune` (through
workers/domains.py), safe to repeat.

Stripe payloads go once processed and past PAYLOAD_RETENTION; the ids stay a while longer
to recognise Stripe's retries (it retries for up to three days). A failed event's payload
goes too, PAYLOAD_RETENTION after it arrived: an operator has had that long to retry it;
its row (ids, type, error) stays as the record of the failure.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from workers.db import rows_affected

PAYLOAD_RETENTION = timedelta(days=30)
ID_RETENTION = timedelta(days=90)


async def prune(pool: asyncpg.Pool, now: datetime) -> dict[str, int]:
    payloads = await pool.execute(
        """UPDATE stripe_events SET payload = NULL
            WHERE payload IS NOT NULL
              AND ((state IN ('done', 'ignored') AND processed_at < $1)
                   OR (state = 'failed' AND received_at < $1))""",
        now - PAYLOAD_RETENTION,
    )
    events = await pool.execute(
        "DELETE FROM stripe_events WHERE state IN ('done', 'ignored') AND processed_at < $1",
        now - ID_RETENTION,
    )
    return {"stripe_payloads": rows_affected(payloads), "stripe_events": rows_affected(events)}
