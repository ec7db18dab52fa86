"""What the fault scenarios on jobs need beyond tests/conftest.py."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.processes import bindery_env


@pytest.fixture
async def own_jobs_database(accounts_db: Any) -> tuple[asyncpg.Pool, dict[str, str]]:
    """A database of the test's own (the pool, and the environment pointing `bindery` at
    it): the jobs reconciler re-sends every stale job it finds, so it must find this
    test's jobs and no other test's."""
    db = await accounts_db(0)
    return db.pool, bindery_env(DATABASE_URL=db.url)
