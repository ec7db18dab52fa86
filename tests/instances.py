"""An account with one instance, for tests that back instances up."""

from __future__ import annotations

import secrets

import asyncpg


async def add_instance(pool: asyncpg.Pool, database_url: str, name: str) -> int:
    """A new account owning an instance whose database is `database_url`; its id."""
    account_id = await pool.fetchval(
        "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id",
        f"{secrets.token_hex(4)}@ex.fr",
    )
    instance_id: int = await pool.fetchval(
        "INSERT INTO instances (account_id, name, database_url) VALUES ($1, $2, $3) RETURNING id",
        account_id,
        name,
        database_url,
    )
    return instance_id
