"""Prove that nothing of an account is left before its request is `done`.

Every text and JSON column of every table is searched for the account's email
(case-insensitively), names and Stripe customer id, every `account_id` column for its
id; the S3 prefixes of its instances are listed; Stripe is asked for the customer.
The bookkeeping of erasure itself (requests, steps, ledger) and the audit log hold ids
only and are not searched for the id. The account row is the one place allowed to
hold them still: it is deleted right after, in the last step.
"""

from __future__ import annotations

import stripe

from tasks.erasure.context import Erasure, s3_session
from workers.db import quote_identifier
from workers.jobs import JobError
from workers.s3 import count_prefix

# Ids only, by design: the audit trail and erasure's own records.
# Tables whose rows may keep the bare account id: records of what was done, not data.
# (A breach campaign's row says the customer was told, or skipped; its address is gone.)
ID_ONLY_TABLES = {
    "erasure_requests",
    "erasure_steps",
    "erasure_ledger",
    "audit_log",
    "schema_migrations",
    "breach_recipients",
}
TEXT_TYPES = ("text", "character varying", "json", "jsonb")


class VerificationFailed(JobError):
    """Something of the account is still there; the message names where (never what)."""


async def _columns(erasure: Erasure) -> dict[str, list[tuple[str, str]]]:
    rows = await erasure.pool.fetch(
        """
        SELECT c.table_name, c.column_name, c.data_type
          FROM information_schema.columns c
          JOIN information_schema.tables t USING (table_schema, table_name)
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
         ORDER BY c.table_name, c.ordinal_position
        """
    )
    tables: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        tables.setdefault(row["table_name"], []).append((row["column_name"], row["data_type"]))
    return tables


def _like_patterns(needles: list[str]) -> list[str]:
    """`%needle%` for LIKE, with LIKE's own wildcards escaped."""
    escaped = (n.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for n in needles)
    return [f"%{needle}%" for needle in escaped]


async def _scan_table(
    erasure: Erasure, table: str, columns: list[tuple[str, str]], needles: list[str]
) -> dict[str, int]:
    """One pass over `table`: per column, the rows that mention the account."""
    checks: list[tuple[str, str]] = []
    for column, data_type in columns:
        if data_type in TEXT_TYPES and needles:
            checks.append((column, "lower(" + quote_identifier(column) + "::text) LIKE ANY($1::text[])"))
        elif column == "account_id" and table not in ID_ONLY_TABLES:
            checks.append((column, quote_identifier(column) + " = $2"))
    if not checks:
        return {}
    counts = ", ".join("count(*) FILTER (WHERE " + condition + ")" for _, condition in checks)
    # The account's own row is allowed to hold all of it: `delete_account` deletes it last.
    own_row = "id <> $2" if table == "accounts" else "$2::bigint IS NOT NULL"
    row = await erasure.pool.fetchrow(
        "SELECT "
        + counts
        + " FROM "
        + quote_identifier(table)
        + " WHERE "
        + own_row
        + " AND $1::text[] IS NOT NULL",
        _like_patterns(needles),
        erasure.account_id,
    )
    assert row is not None
    return {table + "." + column: row[i] for i, (column, _) in enumerate(checks) if row[i]}


async def find_leftovers(erasure: Erasure) -> dict[str, int]:
    """Where something of the account remains: {"table.column" or "s3:…" or "stripe": count}."""
    identity = erasure.identity
    needles = [] if identity is None else [identity.email.lower(), *(name.lower() for name in identity.names)]
    if identity is not None and identity.customer_id:
        needles.append(identity.customer_id.lower())
    found: dict[str, int] = {}
    for table, columns in (await _columns(erasure)).items():
        found.update(await _scan_table(erasure, table, columns, needles))
    async with s3_session(erasure) as client:
        for instance_id in erasure.instance_ids:
            left = await count_prefix(client, erasure.settings.s3_bucket, f"instances/{instance_id}/")
            if left:
                found[f"s3:instances/{instance_id}/"] = left
    if identity is not None and identity.customer_id:
        try:
            customer = await erasure.gate.call(
                erasure.stripe.v1.customers.retrieve_async, identity.customer_id
            )
            if not getattr(customer, "deleted", False):
                found["stripe:customer"] = 1
        except stripe.InvalidRequestError as error:
            if error.http_status != 404:
                raise
    return found


async def verify_nothing_left(erasure: Erasure) -> dict[str, int]:
    found = await find_leftovers(erasure)
    if found:
        where = ", ".join(f"{place}: {count}" for place, count in sorted(found.items()))
        raise VerificationFailed(f"erasure verification found data left in {where}")
    return {"places_left": 0}
