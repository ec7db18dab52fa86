"""PostgreSQL connections: the pool each process opens, and creating the database."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A connection of our own, or one borrowed from a pool.
Connection = asyncpg.Connection | PoolConnectionProxy

_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


async def _init_connection(conn: asyncpg.Connection) -> None:
    # json/jsonb as Python objects, both ways.
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset: nothing beyond asyncpg's own (which still rolls back an open transaction).

    The default reset sends `RESET ALL; UNLISTEN *; …` on every release, one more round
    trip per statement run through the pool. bindery leaves no session state on a pooled
    connection (no LISTEN or session advisory lock: the migration runner's lock is on its
    own connection; the one SET, a batcher's `custom_plans`, is reset by the batcher
    before the connection goes back), so there is nothing to reset.
    """


async def connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn, timeout=5.0)
    await _init_connection(conn)
    return conn


async def create_pool(
    dsn: str, *, max_size: int, min_size: int = 1, application_name: str = "bindery"
) -> asyncpg.Pool:
    """A pool whose connections say which role opened them (pg_stat_activity.application_name)."""
    pool = await asyncpg.create_pool(
        dsn,
        server_settings={"application_name": application_name},
        min_size=min(min_size, max_size),
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        timeout=5.0,
        command_timeout=60.0,
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def redoable_transaction(conn: Connection) -> AsyncIterator[None]:
    """A transaction whose commit Postgres may acknowledge before its WAL is on disk.

    Only for work derived from rows that are already durable, and redone from them when
    it is not recorded as done (an inbox event and its reconciler). A server crash may
    then lose the last fraction of a second of such commits, each as a whole, never
    half-applied; the work is simply done again. What it saves is a WAL flush per
    commit. `BEGIN` and the setting travel in one round trip.
    """
    await conn.execute("BEGIN; SET LOCAL synchronous_commit = off")
    try:
        yield
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


def rows_affected(status: str) -> int:
    """The row count of a command status such as `DELETE 3` or `UPDATE 0`."""
    return int(status.split()[-1])


def database_name(dsn: str) -> str:
    name = urlsplit(dsn).path.lstrip("/")
    if not _DATABASE_NAME.match(name):
        raise ValueError("the database name in DATABASE_URL must be a plain identifier")
    return name


def quote_identifier(name: str) -> str:
    """Quote a name we chose ourselves (settings, tests), after checking its shape."""
    if not _DATABASE_NAME.match(name):
        raise ValueError("not a plain identifier")
    return '"' + name + '"'


def on_same_server(dsn: str, database: str) -> str:
    """`dsn` with another database: the same server, user and options."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


def maintenance_dsn(dsn: str) -> str:
    """The same server, the `postgres` database: where CREATE/DROP DATABASE are run."""
    return on_same_server(dsn, "postgres")


async def ensure_database(dsn: str) -> bool:
    """Create the database named in `dsn` if it does not exist; True when created."""
    name = database_name(dsn)
    conn = await asyncpg.connect(maintenance_dsn(dsn), timeout=5.0)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        try:
            await conn.execute("CREATE DATABASE " + quote_identifier(name))
        except asyncpg.DuplicateDatabaseError:
            return False  # another runner created it a moment ago
        return True
    finally:
        await conn.close()


async def migrate_database(dsn: str, *, create: bool = False) -> list[str]:
    """Create the database when asked and missing, then apply pending migrations."""
    from schema.runner import migrate

    if create:
        await ensure_database(dsn)
    conn = await connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def drop_database(dsn: str) -> None:
    name = database_name(dsn)
    conn = await asyncpg.connect(maintenance_dsn(dsn), timeout=5.0)
    try:
        await conn.execute("DROP DATABASE IF EXISTS " + quote_identifier(name) + " WITH (FORCE)")
    finally:
        await conn.close()
