"""Operators of the console: who they are, their role, their password (argon2id).

Apart from API tokens: a token is a service's, an operator is a person, who logs in to
the console (workers/console/app.py) with a name and a password.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from workers.audit_log import AuditRecord, write_audit
from workers.errors import JobError

ROLES = ("viewer", "operator", "admin")
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 hashes anything, but a megabyte "password" is an attack
# argon2-cffi's defaults: argon2id, 64 MiB, 3 passes (RFC 9106's second recommendation).
HASHER = PasswordHasher()
# Verified when the name is unknown or disabled, so that a failure costs the same time
# whether or not the operator exists.
_NOBODY = HASHER.hash("bindery: no such operator")
_VERIFYING = asyncio.Semaphore(2)


class OperatorError(JobError):
    """An operator that cannot be created or changed as asked; the message says why."""


@dataclass(frozen=True)
class Operator:
    id: int
    name: str
    role: str

    def may(self, role: str) -> bool:
        """Whether this operator holds `role` or a stronger one."""
        return ROLES.index(self.role) >= ROLES.index(role)


def _checked_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise OperatorError(f"a password has {MIN_PASSWORD} characters at least")
    if len(password) > MAX_PASSWORD:
        raise OperatorError(f"a password has {MAX_PASSWORD} characters at most")
    return password


async def create_operator(pool: asyncpg.Pool, name: str, role: str, password: str, by: str) -> int:
    if not NAME.fullmatch(name):
        raise OperatorError(
            "a name is 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if role not in ROLES:
        raise OperatorError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    digest = HASHER.hash(_checked_password(password))
    async with pool.acquire() as conn, conn.transaction():
        operator_id = await conn.fetchval(
            """INSERT INTO operators (name, role, password_hash) VALUES ($1, $2, $3)
               ON CONFLICT (name) DO NOTHING RETURNING id""",
            name,
            role,
            digest,
        )
        if operator_id is None:
            raise OperatorError(f"an operator named {name} exists already")
        await write_audit(
            conn, AuditRecord(by, "operator.created", "operator", str(operator_id), {"role": role})
        )
    return int(operator_id)


async def list_operators(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT id, name, role, created_at, disabled_at FROM operators ORDER BY name")
    return [dict(row) for row in rows]


async def disable_operator(pool: asyncpg.Pool, name: str, by: str) -> None:
    """Disable the operator and end their sessions at once."""
    async with pool.acquire() as conn, conn.transaction():
        operator_id = await conn.fetchval(
            "UPDATE operators SET disabled_at = now() WHERE name = $1 AND disabled_at IS NULL RETURNING id",
            name,
        )
        if operator_id is None:
            raise OperatorError(f"no enabled operator named {name}")
        await conn.execute("DELETE FROM operator_sessions WHERE operator_id = $1", operator_id)
        await write_audit(conn, AuditRecord(by, "operator.disabled", "operator", str(operator_id)))


async def reset_password(pool: asyncpg.Pool, name: str, password: str, by: str) -> None:
    """A new password (and the operator enabled again); their sessions end."""
    digest = HASHER.hash(_checked_password(password))
    async with pool.acquire() as conn, conn.transaction():
        operator_id = await conn.fetchval(
            "UPDATE operators SET password_hash = $2, disabled_at = NULL WHERE name = $1 RETURNING id",
            name,
            digest,
        )
        if operator_id is None:
            raise OperatorError(f"no operator named {name}")
        await conn.execute("DELETE FROM operator_sessions WHERE operator_id = $1", operator_id)
        await write_audit(conn, AuditRecord(by, "operator.password_reset", "operator", str(operator_id)))


async def check_password(pool: asyncpg.Pool, name: str, password: str) -> Operator | None:
    """The operator, when the name is an enabled operator's and the password theirs. The
    same work is done for an unknown name: the time taken tells nothing."""
    row = await pool.fetchrow(
        "SELECT id, name, role, password_hash FROM operators WHERE name = $1 AND disabled_at IS NULL",
        name[:64],
    )
    digest = row["password_hash"] if row is not None else _NOBODY
    try:
        # A verification takes tens of milliseconds and 64 MiB: in a thread, two at a time.
        async with _VERIFYING:
            await asyncio.to_thread(HASHER.verify, digest, password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    return Operator(row["id"], row["name"], row["role"])
