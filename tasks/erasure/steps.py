"""The erasure steps, in order (`STAGES`). Each is idempotent: run twice, or again after a
crash half-way, it ends where running it once would, and returns what it deleted.

Order matters: the Stripe customer and the instance databases go while we still know
where they are; backup objects are found by instance id (kept in the request); rows
are deleted before verification looks for what is left; the completion email needs
the address; the account row goes last, with the ledger entry, in one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import stripe

from tasks.backups import backups_being_written
from tasks.erasure.audit import audit
from tasks.erasure.context import OWNED_OBJECTS, Erasure, s3_session
from tasks.erasure.ledger import identity_digests, record
from tasks.erasure.notices import completion_notice
from tasks.erasure.verify import verify_nothing_left
from tasks.privacy import close_request
from workers.db import drop_database, rows_affected
from workers.errors import JobError
from workers.mail import MailRefused, NotAMailbox, send_message
from workers.s3 import delete_prefix

Counts = dict[str, int]
Step = Callable[[Erasure], Awaitable[Counts]]

# Every table that can hold something of an account, and what erasure does with it.
# tests/erasure/test_erasure_schema.py fails when a table that references accounts or instances,
# or has a column that names a customer, is missing here: no table escapes by being new.
COVERED_TABLES = {
    "accounts": "deleted last (delete_account)",
    "instances": "databases dropped, rows deleted (instance_databases, rows)",
    "backups": "objects deleted, catalog rows deleted (backup_objects)",
    "subscriptions": "deleted (rows)",
    "payment_methods": "deleted (rows)",
    "mandates": "deleted (rows)",
    "invoices": "kept, unlinked from the account and the customer (rows)",
    "stripe_events": "payload and object id dropped; the event id stays for deduplication (rows, verify)",
    "stripe_objects": "ordering marks of the account's objects deleted (rows)",
    "jobs": "arguments and result emptied (rows)",
    "erasure_requests": "ids only, kept as the record of the erasure",
    "erasure_steps": "ids and counts only",
    "erasure_ledger": "keyed hashes only",
    "erasure_subjects": "the identity an erasure in flight works with; deleted with the account row",
    "stripe_tombstones": "sha256 digests of erased Stripe ids: no id, nothing personal",
    "audit_log": "ids only",
    "breach_campaigns": "the notice and counts: nothing of any one customer",
    "breach_recipients": "address deleted; a row not yet sent counted as skipped (rows)",
    "privacy_requests": "kind, dates and outcome kept as the record of the request; the note emptied (rows)",
}

# Invoices are kept, unlinked, for what French law requires of them.
RETENTION = {
    "invoices": "French Code de commerce art. L123-22: accounting records are kept 10 years",
}


async def disable(erasure: Erasure) -> Counts:
    result = await erasure.pool.execute(
        "UPDATE accounts SET status = 'disabled', updated_at = now() WHERE id = $1 AND status <> 'disabled'",
        erasure.account_id,
    )
    return {"accounts_disabled": rows_affected(result)}


async def stripe_customer(erasure: Erasure) -> Counts:
    identity = erasure.identity
    if identity is None or identity.customer_id is None:
        return {"stripe_customers": 0}
    try:
        await erasure.gate.call(erasure.stripe.v1.customers.delete_async, identity.customer_id)
    except stripe.InvalidRequestError as error:
        if error.http_status != 404:
            raise
        return {"stripe_customers": 0}  # already gone counts as done
    return {"stripe_customers": 1}


async def instance_databases(erasure: Erasure) -> Counts:
    rows = await erasure.pool.fetch(
        "SELECT database_url FROM instances WHERE account_id = $1", erasure.account_id
    )
    # IF EXISTS: a second run drops nothing. At once: most of a drop is waiting for
    # every backend to let go of the database's files, not work of its own.
    await asyncio.gather(*(drop_database(row["database_url"]) for row in rows))
    return {"instance_databases": len(rows)}


class BackupBeingWritten(JobError):
    """A backup of the account's instances holds a live lease: the step waits (is retried)."""


async def backup_objects(erasure: Erasure) -> Counts:
    # A backup that had passed pg_dump when the databases were dropped may still be
    # uploading; deleting under it would let its object land after the deletion. New
    # backups refuse the instances of a running erasure, checked under the catalog's claim
    # lock, which `backups_being_written` takes too: a claim that looked before this
    # erasure began has its row by then.
    writing = await backups_being_written(erasure.pool, erasure.instance_ids)
    if writing:
        raise BackupBeingWritten(f"{writing} backup(s) of the account's instances being written; waiting")
    counts = {"objects": 0, "multipart_uploads": 0}
    async with s3_session(erasure) as client:
        bucket = erasure.settings.s3_bucket
        deleted = await asyncio.gather(
            *(
                delete_prefix(client, bucket, f"instances/{instance_id}/")
                for instance_id in erasure.instance_ids
            )
        )
    for prefix_counts in deleted:
        for key, value in prefix_counts.items():
            counts[key] += value
    result = await erasure.pool.execute(
        "DELETE FROM backups WHERE instance_id = ANY($1::bigint[])", erasure.instance_ids
    )
    return {**counts, "catalog_rows": rows_affected(result)}


async def account_objects(erasure: Erasure) -> list[str]:
    """Ids of the account's Stripe objects and its customer's: the captured ones, and any
    that our tables link to the account since (what inbox events name)."""
    identity = erasure.identity
    customer = identity.customer_id if identity else None
    rows = await erasure.pool.fetch(OWNED_OBJECTS, erasure.account_id, customer)
    found = {row["id"] for row in rows if row["id"]}
    return sorted(found.union(identity.stripe_ids if identity else []))


async def scrub_inbox(erasure: Erasure, object_ids: list[str]) -> int:
    """Drop the payloads of inbox events about the customer or its objects, and what
    they were about: the event ids stay, to recognise Stripe's retries."""
    if not object_ids:
        return 0
    result = await erasure.pool.execute(
        """
        UPDATE stripe_events SET payload = NULL, object_id = NULL
         WHERE id = ANY(ARRAY(  -- an index each: an OR of the two would read the whole inbox
            SELECT id FROM stripe_events
             WHERE coalesce(payload #>> '{data,object,customer}', object_id) = ANY($1::text[])
            UNION SELECT id FROM stripe_events
             WHERE payload #>> '{data,previous_attributes,customer}' = ANY($1::text[])))
        """,
        object_ids,
    )
    return rows_affected(result)


async def rows(erasure: Erasure) -> Counts:
    """Delete or scrub every row of the account's data (COVERED_TABLES says how)."""
    object_ids = await account_objects(erasure)
    customer = erasure.identity.customer_id if erasure.identity else None
    instance_ids = [str(instance_id) for instance_id in erasure.instance_ids]
    counts = {"stripe_event_payloads": await scrub_inbox(erasure, object_ids)}
    async with erasure.pool.acquire() as conn, conn.transaction():
        statements = {
            "mandates": (
                """DELETE FROM mandates WHERE payment_method_id IN
                   (SELECT id FROM payment_methods WHERE account_id = $1 OR customer_id = $2)""",
                (erasure.account_id, customer),
            ),
            "payment_methods": (
                "DELETE FROM payment_methods WHERE account_id = $1 OR customer_id = $2",
                (erasure.account_id, customer),
            ),
            "subscriptions": (
                "DELETE FROM subscriptions WHERE account_id = $1 OR customer_id = $2",
                (erasure.account_id, customer),
            ),
            # Retained (see RETENTION): only the invoice's own fields stay, linked to nobody.
            "invoices_unlinked": (
                """UPDATE invoices SET account_id = NULL, customer_id = NULL, updated_at = now()
                    WHERE account_id = $1 OR customer_id = $2""",
                (erasure.account_id, customer),
            ),
            "stripe_objects": ("DELETE FROM stripe_objects WHERE object_id = ANY($1::text[])", (object_ids,)),
            # Job records keep their name and outcome; what they were about goes.
            "job_records": (
                """UPDATE jobs SET arguments = '{}'::jsonb, result = NULL, updated_at = now()
                    WHERE arguments ->> 'account_id' = $1 OR arguments ->> 'instance_id' = ANY($2::text[])
                       OR ($3::text IS NOT NULL AND strpos(result::text, $3) > 0)""",
                (str(erasure.account_id), instance_ids, customer),
            ),
            # The row stays (the campaign's counts), without the address; not yet sent: skipped.
            "breach_recipients": (
                """UPDATE breach_recipients
                      SET email = NULL,
                          error = CASE WHEN state IN ('sent', 'failed') THEN error ELSE 'account erased' END,
                          state = CASE WHEN state IN ('sent', 'failed') THEN state ELSE 'skipped' END
                    WHERE account_id = $1""",
                (erasure.account_id,),
            ),
            # The register keeps the request's kind, dates and outcome; the note goes.
            "privacy_request_notes": (
                "UPDATE privacy_requests SET note = NULL WHERE account_id = $1 AND note IS NOT NULL",
                (erasure.account_id,),
            ),
            "instances": ("DELETE FROM instances WHERE account_id = $1", (erasure.account_id,)),
        }
        for table, (sql, args) in statements.items():
            result = await conn.execute(sql, *args)
            counts[table] = rows_affected(result)
    return counts


async def verify(erasure: Erasure) -> Counts:
    # Events stored before the burial and applied while `rows` ran (the inbox ignores
    # those about buried ids from then on) are swept again: `rows` is idempotent.
    late = {f"late_{table}": count for table, count in (await rows(erasure)).items() if count}
    found = await verify_nothing_left(erasure)
    return {**late, **found}


async def completion_email(erasure: Erasure) -> Counts:
    """Tell the customer it is done. A mailbox that refuses for good (a closed mailbox is a
    common reason to leave) is recorded with its reply code, and the erasure goes on."""
    if erasure.identity is None or erasure.identity.email is None or not erasure.notify:
        return {"emails": 0}
    try:
        await send_message(
            erasure.settings, completion_notice(erasure.settings, erasure.identity.email, erasure.request_id)
        )
    except MailRefused as refused:
        return {"emails": 0, "refused": refused.code}
    except NotAMailbox:
        return {"emails": 0, "not_a_mailbox": 1}
    return {"emails": 1}


async def delete_account(erasure: Erasure) -> Counts:
    """The account row and the ledger entry, and the request marked done, in one commit."""
    identity = erasure.identity
    async with erasure.pool.acquire() as conn, conn.transaction():
        if identity is not None:
            key = erasure.settings.erasure_ledger_key.get_secret_value()
            digests = identity_digests(key, erasure.account_id, identity.email, identity.customer_id)
            await record(conn, digests, identity.account_created_at)
        result = await conn.execute("DELETE FROM accounts WHERE id = $1", erasure.account_id)
        # The captured identity goes with the row it was read from.
        await conn.execute("DELETE FROM erasure_subjects WHERE request_id = $1", erasure.request_id)
        await conn.execute(
            """UPDATE erasure_steps SET finished_at = now(), counts = $3, error = NULL
                WHERE request_id = $1 AND step = $2""",
            erasure.request_id,
            "delete_account",
            {"accounts": rows_affected(result)},
        )
        await conn.execute(
            """UPDATE erasure_requests SET state = 'done', finished_at = now(), lease_until = NULL,
                      last_error = NULL
                WHERE id = $1""",
            erasure.request_id,
        )
        await audit(conn, "system", "erasure.done", erasure.request_id, {"account_id": erasure.account_id})
        await close_request(conn, erasure_request_id=erasure.request_id, outcome="erased", by="system")
    return {"accounts": rows_affected(result)}


# Stages run in order; the steps of one stage run at once. The Stripe customer, the
# instance databases and the backup objects are three systems, and no one of those steps
# needs another's result (`backup_objects` waits for a backup being written by itself):
# an erasure waits for the slowest of the three rather than for their sum. `rows` deletes
# the instance rows that `instance_databases` reads, so it comes after.
STAGES: list[list[tuple[str, Step]]] = [
    [("disable", disable)],
    [
        ("stripe_customer", stripe_customer),
        ("instance_databases", instance_databases),
        ("backup_objects", backup_objects),
    ],
    [("rows", rows)],
    [("verify", verify)],
    [("completion_email", completion_email)],
    [("delete_account", delete_account)],
]
STEPS = [step for stage in STAGES for step in stage]
