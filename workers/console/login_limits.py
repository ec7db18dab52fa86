"""Failed console logins, counted to slow guessing: per operator name and per address.

A failure is kept a day; within 15 minutes, 5 for one operator or 20 from one address
close the door until the oldest of them is 15 minutes old. A name that is no operator's
is not kept (it may be a password typed in the wrong field): only its address counts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from workers.db import rows_affected

WINDOW = timedelta(minutes=15)
PER_NAME = 5
PER_ADDRESS = 20
KEPT = timedelta(days=1)


async def too_many_failures(pool: asyncpg.Pool, name: str, client_ip: str | None) -> bool:
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM console_login_failures
                    WHERE operator_name = $1 AND at > now() - $3::interval) AS by_name,
                  (SELECT count(*) FROM console_login_failures
                    WHERE client_ip = $2::inet AND at > now() - $3::interval) AS by_address""",
        name[:64],
        client_ip,
        WINDOW,
    )
    assert row is not None  # an aggregate always has its row
    return bool(row["by_name"] >= PER_NAME or row["by_address"] >= PER_ADDRESS)


async def record_failure(pool: asyncpg.Pool, name: str, client_ip: str | None) -> None:
    """One failed login; `name` is kept only when it is an operator's."""
    await pool.execute(
        """INSERT INTO console_login_failures (operator_name, client_ip)
           VALUES (CASE WHEN EXISTS (SELECT 1 FROM operators WHERE name = $1) THEN $1 ELSE '' END,
                   $2::inet)""",
        name[:64],
        client_ip,
    )


async def prune_failures(pool: asyncpg.Pool, now: datetime) -> int:
    result = await pool.execute("DELETE FROM console_login_failures WHERE at < $1", now - KEPT)
    return rows_affected(result)
