"""Console sessions: a random cookie value, known to the database by its sha256 only,
with an idle and an absolute timeout, and the CSRF token of its forms."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from workers.console.operators import Operator
from workers.db import rows_affected

COOKIE = "bindery_console"
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
# A session's last_seen_at is written at most this often: a page view is a read.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Session:
    operator: Operator
    csrf_token: str


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def open_session(pool: asyncpg.Pool, operator: Operator) -> str:
    """A new session for the operator; the cookie's value (shown to no one else)."""
    token = secrets.token_urlsafe(32)
    await pool.execute(
        "INSERT INTO operator_sessions (token_digest, operator_id, csrf_token) VALUES ($1, $2, $3)",
        _digest(token),
        operator.id,
        secrets.token_urlsafe(32),
    )
    return token


async def find_session(pool: asyncpg.Pool, token: str) -> Session | None:
    """The live session of an enabled operator that the cookie names, touched; None when
    there is none, or it has been idle or open too long (then it is deleted)."""
    if not token or len(token) > 100:
        return None
    row = await pool.fetchrow(
        """SELECT s.csrf_token, s.created_at, s.last_seen_at, now() AS now, o.id, o.name, o.role
             FROM operator_sessions s JOIN operators o ON o.id = s.operator_id
            WHERE s.token_digest = $1 AND o.disabled_at IS NULL""",
        _digest(token),
    )
    if row is None:
        return None
    if row["now"] - row["last_seen_at"] > IDLE or row["now"] - row["created_at"] > ABSOLUTE:
        await close_session(pool, token)
        return None
    if row["now"] - row["last_seen_at"] > TOUCH_EVERY:
        await pool.execute(
            "UPDATE operator_sessions SET last_seen_at = now() WHERE token_digest = $1", _digest(token)
        )
    return Session(Operator(row["id"], row["name"], row["role"]), row["csrf_token"])


async def close_session(pool: asyncpg.Pool, token: str) -> None:
    await pool.execute("DELETE FROM operator_sessions WHERE token_digest = $1", _digest(token))


async def prune_sessions(pool: asyncpg.Pool, now: datetime) -> int:
    """Sessions past their idle or absolute timeout (a visit would delete them anyway)."""
    result = await pool.execute(
        "DELETE FROM operator_sessions WHERE last_seen_at < $1 OR created_at < $2", now - IDLE, now - ABSOLUTE
    )
    return rows_affected(result)
