"""The instance's database as pg_dump sees it: a snapshot exported for `pg_dump
--snapshot`, and the row counts of every table taken in that same snapshot (what a
restore must give back)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from workers.db import quote_identifier


@dataclass(frozen=True)
class Snapshot:
    size: int
    version: str
    snapshot_id: str
    connection: asyncpg.Connection  # in the snapshot's transaction, for the row counts


async def table_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Rows per user table, by schema-qualified name."""
    tables = await conn.fetch(
        """SELECT table_schema, table_name FROM information_schema.tables
            WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
            ORDER BY 1, 2"""
    )
    counts = {}
    for table in tables:
        name = quote_identifier(table["table_schema"]) + "." + quote_identifier(table["table_name"])
        # bandit: catalog names, quoted
        counts[name] = int(await conn.fetchval("SELECT count(*) FROM " + name))  # nosec B608
    return counts


@asynccontextmanager
async def source_snapshot(database_url: str) -> AsyncIterator[Snapshot]:
    """A snapshot of the instance's database, exported for pg_dump (`--snapshot`) and held
    open while it runs: row counts taken in it are exactly what the dump contains."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot_id: str = await conn.fetchval("SELECT pg_export_snapshot()")
            size: int = await conn.fetchval("SELECT pg_database_size(current_database())")
            version: str = await conn.fetchval("SHOW server_version")
            yield Snapshot(size, version, snapshot_id, conn)
    finally:
        await conn.close()
