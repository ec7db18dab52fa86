"""bindery databases made by the tests.

Every such database shares the session's one S3 bucket, where backups live under
`instances/{instance id}/`. Instance ids would start at 1 in each database, so one test's
backup of instance 1 would land under another test's prefix and spoil its count; each
database made here numbers its instances from a range of its own.
"""

from __future__ import annotations

import itertools

from workers.db import connect, migrate_database

IDS_PER_DATABASE = 1_000_000
_ranges = itertools.count()


async def new_bindery_database(url: str) -> None:
    """Create and migrate the database at `url`, its instance ids in a range of its own."""
    await migrate_database(url, create=True)
    first_id = next(_ranges) * IDS_PER_DATABASE + 1
    conn = await connect(url)
    try:
        # A literal: utility statements take no parameters, and first_id is our own integer.
        await conn.execute(f"ALTER TABLE instances ALTER COLUMN id RESTART WITH {first_id}")
    finally:
        await conn.close()
