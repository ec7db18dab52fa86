"""No table escapes erasure by being new: every table that references accounts or
instances, or has a column naming a customer, is in the erasure plan."""

from __future__ import annotations

import asyncpg

from tasks.erasure.steps import COVERED_TABLES

# Column names that mean "this row is about a customer".
PERSONAL_COLUMNS = {"account_id", "customer_id", "instance_id", "email", "first_name", "last_name", "address"}


async def test_every_table_holding_customer_data_is_covered_by_the_erasure(pool: asyncpg.Pool) -> None:
    referencing = await pool.fetch(
        """
        SELECT DISTINCT tc.table_name
          FROM information_schema.table_constraints tc
          JOIN information_schema.constraint_column_usage ccu USING (constraint_schema, constraint_name)
         WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema()
           AND ccu.table_name IN ('accounts', 'instances')
        """
    )
    personal = await pool.fetch(
        """
        SELECT DISTINCT c.table_name FROM information_schema.columns c
          JOIN information_schema.tables t USING (table_schema, table_name)
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
           AND c.column_name = ANY($1::text[])
        """,
        sorted(PERSONAL_COLUMNS),
    )
    tables = {row["table_name"] for row in [*referencing, *personal]}
    assert "accounts" in tables and "payment_methods" in tables  # the query sees what it should
    assert tables - set(COVERED_TABLES) == set()


async def test_the_plan_names_only_tables_that_exist(pool: asyncpg.Pool) -> None:
    existing = {
        row["table_name"]
        for row in await pool.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    }
    assert set(COVERED_TABLES) - existing == set()
