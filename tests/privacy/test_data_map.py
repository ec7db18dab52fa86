"""One data map for both answers to a data subject: no table escapes the erasure or the
export by being new, every place says what each does with it, and every statement of
the map runs against the real schema."""

from __future__ import annotations

import asyncpg
import pytest

from tasks.erasure.steps import PLACES, STEPS
from tasks.privacy.export import EXPORTED_HERE
from workers.data_map import LINK_COLUMNS, Erase, Place, Statement, Subject

# Column names that mean "this row is about a customer".
PERSONAL_COLUMNS = {"account_id", "customer_id", "instance_id", "email", "first_name", "last_name", "address"}


async def test_every_table_holding_customer_data_is_in_the_data_map(pool: asyncpg.Pool) -> None:
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
    assert tables - {place.name for place in PLACES} == set()


async def test_the_map_names_only_tables_that_exist_each_once(pool: asyncpg.Pool) -> None:
    existing = {
        row["table_name"]
        for row in await pool.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    }
    names = [place.name for place in PLACES]
    assert len(names) == len(set(names))
    assert {place.name for place in PLACES if place.is_table} - existing == set()


def test_what_the_map_leaves_to_code_is_code_that_exists() -> None:
    steps = {name for name, _ in STEPS}
    assert {place.erased_by for place in PLACES if place.erased_by} - steps == set()
    assert {place.exported_by for place in PLACES if place.exported_by} == set(EXPORTED_HERE)
    categories = [place.export.category for place in PLACES if place.export]
    assert len(categories) == len(set(categories))  # one file each


def test_a_place_must_say_one_way_for_each_answer() -> None:
    with pytest.raises(ValueError, match="exactly one way for the erasure"):
        Place("notes", "deleted", kept="no", erased_by="rows", not_exported="none")
    with pytest.raises(ValueError, match="exactly one way for the export"):
        Place("notes", "deleted", kept="no")
    Place("notes", "deleted", erase=Erase("notes", Statement("DELETE FROM notes")), not_exported="none")


async def test_every_statement_of_the_map_runs_on_the_schema(pool: asyncpg.Pool) -> None:
    subject = Subject(987_654_321, "cus_none", ["cus_none", "sub_none"], [987_654_321])
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            for place in PLACES:
                for statement in (
                    place.erase.statement if place.erase else None,
                    place.export and place.export.query,
                ):
                    if statement is not None:
                        await conn.execute(statement.sql, *statement.bind(subject))
        finally:
            await transaction.rollback()


async def test_every_column_of_an_exported_table_is_exported_or_left_out_for_a_reason(
    pool: asyncpg.Pool,
) -> None:
    """A column added to a table is in the archive, or left out on purpose: never forgotten."""
    for place in PLACES:
        if place.export is None or not place.is_table:
            continue
        columns = {
            row["column_name"]
            for row in await pool.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = $1",
                place.name,
            )
        }
        async with pool.acquire() as conn:
            statement = await conn.prepare(place.export.query.sql)
            read = {attribute.name for attribute in statement.get_attributes()}
        left_out = set(place.export.left_out)
        assert columns - read - left_out - set(LINK_COLUMNS) == set(), place.name
        assert left_out - columns == set(), place.name  # no reason kept for a column that is gone
        assert read & left_out == set(), place.name
