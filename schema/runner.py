"""Apply `schema/NNNN_name.sql` in order, each in its own transaction, exactly once.

Every applied file's sha256 is recorded; a file that changed after it was applied is
refused rather than silently ignored. A session-level advisory lock makes concurrent
runners (two `release` phases at once) wait for each other instead of racing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

SCHEMA_DIR = Path(__file__).parent
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every runner of this schema.
_LOCK_KEY = 0x62696E64  # "bind"


class MigrationError(Exception):
    """The migrations on disk and in the database disagree, or a file is misnamed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = SCHEMA_DIR) -> list[Migration]:
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(f"{path.name}: version {version:04d} is used twice")
        migrations[version] = Migration(version, match.group(2), path.read_text())
    return [migrations[version] for version in sorted(migrations)]


async def migrate(conn: asyncpg.Connection, directory: Path = SCHEMA_DIR) -> list[str]:
    """Apply pending migrations; return the names of those applied now."""
    migrations = discover(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        applied = {
            row["version"]: row
            for row in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        }
        newly_applied: list[str] = []
        for migration in migrations:
            label = f"{migration.version:04d}_{migration.name}"
            done = applied.get(migration.version)
            if done is not None:
                if done["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"{label}.sql changed after it was applied; "
                        "write a new migration instead of editing an applied one"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            newly_applied.append(label)
        unknown = sorted(set(applied) - {m.version for m in migrations})
        if unknown:
            raise MigrationError(
                f"the database has migration {unknown[0]:04d} that is not on disk "
                "(is this checkout older than the database?)"
            )
        return newly_applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
