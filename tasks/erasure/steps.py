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

import asyncpg
import stripe
from botocore.exceptions import ClientError

from tasks.backups import backups_being_written
from tasks.billing import stripe_ids
from tasks.erasure.audit import audit
from tasks.erasure.context import Erasure, s3_session
from tasks.erasure.ledger import identity_digests, record
from tasks.erasure.notices import completion_notice
from tasks.erasure.verify import verify_nothing_left
from tasks.privacy import close_request
from workers.data_map import Erase, Subject, erase_statements
from workers.db import Connection, drop_database, rows_affected
from workers.domains import data_map
from workers.errors import JobError
from workers.logs import get_logger
from workers.mail import MailRefused, NotAMailbox, send_message
from workers.s3 import delete_prefix, export_prefix, export_s3_client, is_missing_bucket

log = get_logger(__name__)
Counts = dict[str, int]
Step = Callable[[Erasure], Awaitable[Counts]]

# Every place that can hold something of an account, and what erasure does with it:
# the data map (workers/data_map.py), the same the access export reads.
PLACES = data_map()

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


async def subject(erasure: Erasure) -> Subject:
    """Whom the map's statements are about: the account, its customer, and its Stripe
    objects: the captured ones and any that our tables link to the account since (what
    inbox events name)."""
    identity = erasure.identity
    customer = identity.customer_id if identity else None
    found = await stripe_ids(erasure.pool, erasure.account_id, customer)
    every = sorted(set(found).union(identity.stripe_ids if identity else []))
    return Subject(erasure.account_id, customer, every, erasure.instance_ids)


async def rows(erasure: Erasure) -> Counts:
    """Delete or scrub every row of the account's data: the data map's statements."""
    about = await subject(erasure)

    async def run(conn: asyncpg.Pool | Connection, erase: Erase) -> None:
        counts[erase.counted_as] = rows_affected(
            await conn.execute(erase.statement.sql, *erase.statement.bind(about))
        )

    counts: Counts = {}
    for erase in erase_statements(PLACES, "before"):
        await run(erasure.pool, erase)
    async with erasure.pool.acquire() as conn, conn.transaction():
        for erase in [*erase_statements(PLACES, "rows"), *erase_statements(PLACES, "last")]:
            await run(conn, erase)
    return counts


async def export_archives(erasure: Erasure) -> Counts:
    """The account's access-export archives, in the export bucket."""
    try:
        async with export_s3_client(erasure.settings) as client:
            bucket, prefix = erasure.settings.export_s3_bucket, export_prefix(erasure.account_id)
            deleted = await delete_prefix(client, bucket, prefix)
    except ClientError as error:
        if not is_missing_bucket(error):
            raise
        # No bucket holds no archive (none was ever made, or `init-bucket` never ran).
        log.warning("export bucket missing; no archive to delete", request_id=erasure.request_id)
        deleted = {"objects": 0, "multipart_uploads": 0}
    return {"export_" + key: value for key, value in deleted.items()}


async def verify(erasure: Erasure) -> Counts:
    # Events stored before the burial and applied while `rows` ran (the inbox ignores
    # those about buried ids from then on) are swept again: `rows` is idempotent.
    late = {f"late_{table}": count for table, count in (await rows(erasure)).items() if count}
    # An export that was building when the erasure began (it refuses to start after) may
    # have landed its archive since.
    late.update({f"late_{kind}": count for kind, count in (await export_archives(erasure)).items() if count})
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
# needs another's result (`backup_objects` waits for a backup being written by itself),
# nor does the deletion of export archives: an erasure waits for the slowest rather
# than for their sum. `rows` deletes
# the instance rows that `instance_databases` reads, so it comes after.
STAGES: list[list[tuple[str, Step]]] = [
    [("disable", disable)],
    [
        ("stripe_customer", stripe_customer),
        ("instance_databases", instance_databases),
        ("backup_objects", backup_objects),
        ("export_archives", export_archives),
    ],
    [("rows", rows)],
    [("verify", verify)],
    [("completion_email", completion_email)],
    [("delete_account", delete_account)],
]
STEPS = [step for stage in STAGES for step in stage]
