from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from schema.runner import SCHEMA_DIR, MigrationError, discover, migrate
from tests.processes import BINDERY, bindery_env
from workers.db import connect, drop_database, ensure_database


@pytest.fixture
async def scratch_url(database_url: str) -> AsyncIterator[str]:
    url = database_url.rsplit("/", 1)[0] + f"/bindery_scratch_{secrets.token_hex(4)}"
    await ensure_database(url)
    yield url
    await drop_database(url)


async def test_migrations_apply_in_order_once(scratch_url: str) -> None:
    conn = await connect(scratch_url)
    try:
        first = await migrate(conn)
        again = await migrate(conn)
        versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    assert first == [f"{m.version:04d}_{m.name}" for m in discover()]
    assert again == []
    assert [row["version"] for row in versions] == [m.version for m in discover()]


async def test_an_applied_migration_that_changed_is_refused(scratch_url: str, tmp_path: Path) -> None:
    for path in SCHEMA_DIR.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    conn = await connect(scratch_url)
    try:
        await migrate(conn, tmp_path)
        edited = tmp_path / "0002_job_api.sql"
        edited.write_text(edited.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match=r"0002_job_api\.sql changed"):
            await migrate(conn, tmp_path)
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_behind(scratch_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    conn = await connect(scratch_url)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(conn, tmp_path)
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
        applied = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await conn.close()
    assert "good" in tables
    assert "half" not in tables
    assert applied == 1


def test_misnamed_migration_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_first.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        discover(tmp_path)


async def test_two_migrate_processes_at_once_are_safe(scratch_url: str) -> None:
    env = bindery_env(DATABASE_URL=scratch_url)
    processes = [
        await asyncio.create_subprocess_exec(
            BINDERY, "migrate", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [await process.communicate() for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    reports = sorted(out.decode() for out, _ in outputs)
    assert reports[0].startswith("applied 0 migration(s)")
    assert reports[1].startswith(f"applied {len(discover())} migration(s)")
