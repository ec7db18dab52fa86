"""Prove that nothing of an account is left before its request is `done`.

Every text and JSON column of every table is searched for the account's email
(case-insensitively), names and Stripe customer id, every `account_id` column for its
id; the S3 prefixes of its instances and of its export archives are listed; Stripe is asked for the customer.
The bookkeeping of erasure itself (requests, steps, ledger) and the audit log hold ids only
and are not searched for the id. The account row and the captured identity
(`erasure_subjects`) are the places allowed to hold them still: both are deleted right
after, in the last step.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from dataclasses import dataclass

import asyncpg
import stripe
from botocore.exceptions import ClientError

from tasks.erasure.context import Erasure, s3_session
from workers.batching import Batcher
from workers.db import quote_identifier
from workers.errors import JobError
from workers.s3 import count_prefix, export_prefix, export_s3_client, is_missing_bucket

# Ids only, by design: the audit trail and erasure's own records.
# Tables whose rows may keep the bare account id: records of what was done, not data.
# (A breach campaign's row says the customer was told, or skipped; its address is gone.
# The privacy register's row says a request was received and answered; its note is gone,
# and its other text is still searched.)
ID_ONLY_TABLES = {
    "erasure_requests",
    "erasure_steps",
    "erasure_ledger",
    "audit_log",
    "schema_migrations",
    "breach_recipients",
    "privacy_requests",
}
# The identities of the erasures in flight, captured to be searched for: each is deleted
# with its account row, in the last step.
NOT_SEARCHED = {"erasure_subjects"}
TEXT_TYPES = ("text", "character varying", "json", "jsonb")
# The most erasures one shared scan serves (a worker process runs 8 at most by default;
# matching grows with the number of needles), and how long a verification waits for
# others to share its scan. A scan costs nearly the same for one erasure as for eight:
# most of it is Postgres writing every payload as text and the worker decoding it, and
# one erasure's needles add little to that. Waiting a little lets concurrent erasures
# share a scan instead of each paying for its own; a lone erasure pays the wait once.
SCAN_BATCH = 8
SCAN_LINGER = 1.0  # seconds


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


@dataclass(frozen=True)
class _Probe:
    """What one erasure looks for: its account id and the texts that identify it (lowered)."""

    pool: asyncpg.Pool
    account_id: int
    needles: tuple[str, ...]


# How COPY's text format writes a value: these characters become backslash sequences.
_COPY_ESCAPES = str.maketrans(
    {"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
)


def json_forms(needle: str) -> tuple[str, str]:
    """The needle as text, and as it appears inside a JSON string (jsonb's text escapes
    quotes, backslashes and control characters, and writes the rest as it is)."""
    return needle, json.dumps(needle, ensure_ascii=False)[1:-1]


def copy_escaped(needle: str) -> str:
    """The needle as it appears inside a value of a COPY text stream."""
    return needle.translate(_COPY_ESCAPES)


class _Matcher:
    """Looks for the probes' needles in a table's COPY text stream, as it arrives.

    Rows end with a newline and values are separated by tabs; inside values, COPY writes
    those (and backslashes) as backslash sequences, and so are the needles written. So a
    needle can match inside one value only, never across two values or two rows. Each
    needle is looked for once in each lowered piece of the stream; only a piece where
    one turns up is split into rows and values, to count (and, in `accounts`, to leave
    the account's own row out: its id is the first value).
    """

    def __init__(self, table: str, columns: list[str], probes: list[_Probe]) -> None:
        self.table, self.columns, self.probes = table, columns, probes
        self.needles = [
            tuple(
                dict.fromkeys(copy_escaped(form) for needle in probe.needles for form in json_forms(needle))
            )
            for probe in probes
        ]
        self.found: list[dict[str, int]] = [{} for _ in probes]
        self._rest = b""

    async def feed(self, data: bytes) -> None:
        data = self._rest + data
        end = data.rfind(b"\n") + 1  # whole rows now; the rest waits for the next piece
        self._rest = data[end:]
        self.match(data[:end].decode().lower())

    def match(self, text: str) -> None:
        for index, needles in enumerate(self.needles):
            if any(needle in text for needle in needles):
                self._count(text, index, needles)

    def _count(self, text: str, index: int, needles: tuple[str, ...]) -> None:
        own_row = str(self.probes[index].account_id) if self.table == "accounts" else None
        first = 0 if own_row is None else 1
        place = self.found[index]
        for line in text.split("\n")[:-1]:  # not splitlines(): values may hold \x1c, \u2028…
            values = line.split("\t")
            if own_row is not None and values[0] == own_row:
                continue
            for column, value in zip(self.columns, values[first:], strict=True):
                if any(needle in value for needle in needles):
                    place[self.table + "." + column] = place.get(self.table + "." + column, 0) + 1


async def _text_mentions(
    pool: asyncpg.Pool, table: str, columns: list[str], probes: list[_Probe]
) -> list[dict[str, int]]:
    """One pass over the table's text columns, streamed by COPY, for every probe at once.

    Why not `lower(column::text) LIKE ANY(patterns)` in SQL: LIKE pays a full pass over
    the text for every pattern, so 16 erasures' 48 patterns cost dozens of passes over the
    inbox's payloads, while here the text crosses once and each needle is a fast
    substring search (several times faster for 16 erasures, and faster for one alone).
    """
    matcher = _Matcher(table, columns, probes)
    if not any(matcher.needles):
        return matcher.found
    selected = ", ".join(quote_identifier(column) + "::text" for column in columns)
    if table == "accounts":
        selected = "id, " + selected
    # Table and column names come from the catalog, quoted.
    query = "SELECT " + selected + " FROM " + quote_identifier(table)  # nosec
    async with pool.acquire() as conn:
        # A NULL as an empty value: nothing to find in either.
        await conn.copy_from_query(query, output=matcher.feed, format="text", null="")
    return matcher.found


async def _id_mentions(pool: asyncpg.Pool, table: str, probes: list[_Probe]) -> list[dict[str, int]]:
    """Rows of `table` whose account_id is one of the probes' accounts."""
    # The table name comes from the catalog, quoted; the ids are a parameter.
    query = "SELECT account_id, count(*) FROM " + quote_identifier(table)  # nosec
    rows = await pool.fetch(
        query + " WHERE account_id = ANY($1::bigint[]) GROUP BY 1", [p.account_id for p in probes]
    )
    counts = {row[0]: row[1] for row in rows}
    return [{table + ".account_id": counts[p.account_id]} if p.account_id in counts else {} for p in probes]


async def _scan(probes: list[_Probe]) -> list[dict[str, int]]:
    """Every table read once for all the probes (erasures verifying at the same time)."""
    pool = probes[0].pool
    found: list[dict[str, int]] = [{} for _ in probes]
    for table, columns in (await _columns(pool)).items():
        if table in NOT_SEARCHED:
            continue
        texts = [column for column, data_type in columns if data_type in TEXT_TYPES]
        parts = [await _text_mentions(pool, table, texts, probes)] if texts else []
        if table not in ID_ONLY_TABLES and any(column == "account_id" for column, _ in columns):
            parts.append(await _id_mentions(pool, table, probes))
        for part in parts:
            for place, more in zip(found, part, strict=True):
                place.update(more)
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
        _scans[loop] = Batcher(_scan_batch, max_batch=SCAN_BATCH, linger=SCAN_LINGER)
    return _scans[loop]


async def find_leftovers(erasure: Erasure) -> dict[str, int]:
    """Where something of the account remains: {"table.column" or "s3:…" or "stripe": count}."""
    identity = erasure.identity
    needles = []
    if identity is not None:
        needles = [name.lower() for name in identity.names]
        if identity.email:
            needles.append(identity.email.lower())
        if identity.customer_id:
            needles.append(identity.customer_id.lower())
    found = await _scanner().submit(_Probe(erasure.pool, erasure.account_id, tuple(needles)))
    async with s3_session(erasure) as client:
        for instance_id in erasure.instance_ids:
            left = await count_prefix(client, erasure.settings.s3_bucket, f"instances/{instance_id}/")
            if left:
                found[f"s3:instances/{instance_id}/"] = left
    left = await _export_archives_left(erasure)
    if left:
        found["s3:" + export_prefix(erasure.account_id)] = left
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


async def _export_archives_left(erasure: Erasure) -> int:
    try:
        async with export_s3_client(erasure.settings) as client:
            return await count_prefix(
                client, erasure.settings.export_s3_bucket, export_prefix(erasure.account_id)
            )
    except ClientError as error:
        if is_missing_bucket(error):
            return 0
        raise


async def verify_nothing_left(erasure: Erasure) -> dict[str, int]:
    found = await find_leftovers(erasure)
    if found:
        where = ", ".join(f"{place}: {count}" for place, count in sorted(found.items()))
        raise VerificationFailed(f"erasure verification found data left in {where}")
    return {"places_left": 0}
