"""Prove that nothing of an account is left before its request is `done`.

Every text and JSON column of every table is searched for the account's email
(case-insensitively), names and Stripe customer id, every `account_id` column for its
id; the S3 prefixes of its instances are listed; Stripe is asked for the customer.
The bookkeeping of erasure itself (requests, steps, ledger) and the audit log hold ids
only and are not searched for the id. The account row is the one place allowed to
hold them still: it is deleted right after, in the last step.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass

import asyncpg
import stripe

from tasks.erasure.context import Erasure, s3_session
from workers.batching import Batcher
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
# The most erasures one shared scan serves: matching grows with the number of needles.
SCAN_BATCH = 16


class VerificationFailed(JobError):
    """Something of the account is still there; the message names where (never what)."""


async def _columns(pool: asyncpg.Pool) -> dict[str, list[tuple[str, str]]]:
    rows = await pool.fetch(
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


@dataclass(frozen=True)
class _Probe:
    """What one erasure looks for: its account id and the texts that identify it."""

    pool: asyncpg.Pool
    account_id: int
    needles: tuple[str, ...]


async def _count_mentions(
    pool: asyncpg.Pool, table: str, columns: list[tuple[str, str]], needles: list[str], account_ids: list[int]
) -> dict[str, int]:
    """One pass over `table`: per column, the rows that mention any of the accounts."""
    checks: list[tuple[str, str]] = []
    for column, data_type in columns:
        if data_type in TEXT_TYPES and needles:
            checks.append((column, "lower(" + quote_identifier(column) + "::text) LIKE ANY($1::text[])"))
        elif column == "account_id" and table not in ID_ONLY_TABLES:
            checks.append((column, quote_identifier(column) + " = ANY($2::bigint[])"))
    if not checks:
        return {}
    counts = ", ".join("count(*) FILTER (WHERE " + condition + ")" for _, condition in checks)
    # The account's own row is allowed to hold all of it: `delete_account` deletes it last.
    own_row = "id <> ALL($2::bigint[])" if table == "accounts" else "$2::bigint[] IS NOT NULL"
    # Table and column names come from the catalog, quoted; values are parameters.
    select = "SELECT " + counts + " FROM " + quote_identifier(table)  # nosec
    row = await pool.fetchrow(
        select + " WHERE " + own_row + " AND $1::text[] IS NOT NULL",
        _like_patterns(needles),
        account_ids,
    )
    assert row is not None
    return {table + "." + column: row[i] for i, (column, _) in enumerate(checks) if row[i]}


async def _scan(probes: list[_Probe]) -> list[dict[str, int]]:
    """Every table read once for all the probes; a table where any of them is found is
    read again for each probe alone, to say whose it is. (Nothing found is the usual
    outcome, and the one pass costs far less than one per erasure: most of a pass is
    reading and lowering the text, not matching it.)"""
    pool = probes[0].pool
    found: list[dict[str, int]] = [{} for _ in probes]
    for table, columns in (await _columns(pool)).items():
        # The accounts table is small, and a batch could not tell one account's own row
        # (allowed) from another's (a leftover): always one probe at a time.
        if len(probes) > 1 and table != "accounts":
            everyone = [needle for probe in probes for needle in probe.needles]
            ids = [probe.account_id for probe in probes]
            if not await _count_mentions(pool, table, columns, everyone, ids):
                continue
        for probe, place in zip(probes, found, strict=True):
            place.update(await _count_mentions(pool, table, columns, list(probe.needles), [probe.account_id]))
    return found


async def _scan_batch(probes: list[_Probe]) -> list[dict[str, int]]:
    # One batch per pool (tests may run several databases on one event loop).
    results: dict[int, dict[str, int]] = {}
    by_pool: dict[int, list[int]] = {}
    for index, probe in enumerate(probes):
        by_pool.setdefault(id(probe.pool), []).append(index)
    for indexes in by_pool.values():
        for index, result in zip(indexes, await _scan([probes[i] for i in indexes]), strict=True):
            results[index] = result
    return [results[index] for index in range(len(probes))]


# Erasures verifying at the same time in a worker process share their table scans.
# One batcher per event loop: a batcher's drain task belongs to the loop it started on.
_scans: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Batcher[_Probe, dict[str, int]]] = (
    weakref.WeakKeyDictionary()
)


def _scanner() -> Batcher[_Probe, dict[str, int]]:
    loop = asyncio.get_running_loop()
    if loop not in _scans:
        _scans[loop] = Batcher(_scan_batch, max_batch=SCAN_BATCH)
    return _scans[loop]


async def find_leftovers(erasure: Erasure) -> dict[str, int]:
    """Where something of the account remains: {"table.column" or "s3:…" or "stripe": count}."""
    identity = erasure.identity
    needles = [] if identity is None else [identity.email.lower(), *(name.lower() for name in identity.names)]
    if identity is not None and identity.customer_id:
        needles.append(identity.customer_id.lower())
    found = await _scanner().submit(_Probe(erasure.pool, erasure.account_id, tuple(needles)))
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
