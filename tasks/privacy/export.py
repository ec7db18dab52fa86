"""The access and portability export (GDPR Art. 15 and 20): everything the data map
(workers/data_map.py) says bindery holds about an account, in one ZIP archive, uploaded
to the export bucket; the customer is emailed a link to it that works 7 days at most.

The archive is read from one repeatable-read snapshot, so its files agree with each
other. It is refused for an account whose erasure is in grace or running; an erasure
that begins while the archive is being built deletes it (`export_archives`, and again
in its verification), and the export deletes its own archive when it sees one began.
The bucket's lifecycle rule deletes every archive after a week.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import stripe
from botocore.exceptions import BotoCoreError, ClientError

from tasks.billing import stripe_ids
from tasks.erasure import open_erasure
from tasks.privacy.archive import Archive, ExportFailed, Writable, csv_rows, json_rows
from tasks.privacy.legal_clock import PARIS
from tasks.privacy.notice import export_notice
from tasks.privacy.register import close_request
from tasks.privacy.spooled_upload import SpooledUpload
from tasks.privacy.zip_stream import Deflated
from workers.data_map import Export, Subject
from workers.db import Connection
from workers.domains import data_map
from workers.errors import Refused
from workers.logs import get_logger
from workers.mail import MailRefused, NotAMailbox, send_message
from workers.s3 import describe_s3_error, export_prefix, export_s3_client
from workers.settings import Settings
from workers.stripe_calls import RateLimitedStripe

log = get_logger(__name__)
# What the export writes itself rather than with a query of the map (`exported_by`).
EXPORTED_HERE = ("stripe_customer", "instance_databases")


class ExportRefused(Refused):
    """The account cannot be exported now; the message says why."""


@dataclass(frozen=True)
class Exporting:
    """What an export needs: the settings, the database, and Stripe behind the rate limit."""

    settings: Settings
    pool: asyncpg.Pool
    stripe: stripe.StripeClient
    gate: RateLimitedStripe


async def being_erased(conn: asyncpg.Pool | Connection, account_id: int) -> str | None:
    """Why the account cannot be exported now, if its erasure is under way."""
    erasure = await open_erasure(conn, account_id)
    if erasure is not None:
        return (
            f"account {account_id} is being erased (erasure request {erasure}): its data is not"
            " copied anywhere now; cancel the erasure within its grace period to export it"
        )
    return None


async def export_account(
    clients: Exporting, account_id: int, request_id: int, *, with_instances: bool
) -> dict[str, Any]:
    """Build the account's archive, upload it, email the customer its link, and close the
    register entry `request_id`. What was done: files, sizes, the link's expiry. A refusal
    closes the entry with its reason."""
    try:
        return await _export(clients, account_id, request_id, with_instances=with_instances)
    except ExportRefused as refused:
        async with clients.pool.acquire() as conn:
            await close_request(conn, request_id=request_id, outcome=f"refused: {refused}", by="system")
        raise


async def _export(
    clients: Exporting, account_id: int, request_id: int, *, with_instances: bool
) -> dict[str, Any]:
    if (why := await being_erased(clients.pool, account_id)) is not None:
        raise ExportRefused(why)
    settings = clients.settings
    key = f"{export_prefix(account_id)}{request_id}.zip"
    try:
        archived = await _archive_and_link(clients, key, account_id, with_instances)
    except (ClientError, BotoCoreError) as error:
        raise ExportFailed(f"the archive could not be stored: {describe_s3_error(error)}") from None
    expires_at = archived.expires_at
    done = {
        "request_id": request_id,
        "archive_bytes": archived.size,
        "files": archived.files,
        "link_expires_at": expires_at.isoformat(),
    }
    try:
        notice = export_notice(settings, archived.email, request_id, archived.link, expires_at)
        await send_message(settings, notice)
    except (MailRefused, NotAMailbox) as undeliverable:
        # The request stays open in the register, its clock running: the privacy contact
        # must reach the customer another way.
        mail = f"refused {undeliverable.code}" if isinstance(undeliverable, MailRefused) else "not a mailbox"
        log.warning("export link not delivered", request_id=request_id, mail=mail)
        return {**done, "mail": mail}
    outcome = f"archive sent by email, link valid until {expires_at:%Y-%m-%d %H:%M} Paris time"
    async with clients.pool.acquire() as conn:
        await close_request(conn, request_id=request_id, outcome=outcome, by="system")
    log.info(
        "account exported", request_id=request_id, archive_bytes=archived.size, files=len(archived.files)
    )
    return {**done, "mail": "sent"}


@dataclass(frozen=True)
class Archived:
    link: str
    expires_at: datetime
    size: int
    email: str  # the account's, read in the archive's snapshot
    files: dict[str, int]  # rows or bytes of each file


async def _archive_and_link(clients: Exporting, key: str, account_id: int, with_instances: bool) -> Archived:
    """Write the archive into the bucket under `key`, and sign a link to it."""
    settings = clients.settings
    async with export_s3_client(settings) as client:
        upload = SpooledUpload(client, settings.export_s3_bucket, key)
        await upload.start()
        try:
            email, written = await write_archive(clients, upload, account_id, with_instances=with_instances)
            await upload.finish()
        except BaseException:
            await upload.abandon()
            raise
        size = upload.size
        if (why := await being_erased(clients.pool, account_id)) is not None:
            # An erasure began while the archive was built: it must not outlive it.
            await client.delete_object(Bucket=settings.export_s3_bucket, Key=key)
            raise ExportRefused(why)
        lifetime = settings.export_link_lifetime
        expires_at = datetime.now(PARIS) + lifetime
        link = await client.generate_presigned_url(
            "get_object",
            Params={"Bucket": settings.export_s3_bucket, "Key": key},
            ExpiresIn=int(lifetime.total_seconds()),
        )
    return Archived(link, expires_at, size, email, written)


async def write_archive(
    clients: Exporting, file: Writable, account_id: int, *, with_instances: bool
) -> tuple[str, dict[str, int]]:
    """The archive, into `file`: (the account's email, rows or bytes per file written).

    The instances' dumps stream into the archive (and so into the upload) in a thread,
    while the categories are read from the snapshot into entries deflated aside; those
    are copied in after. The two take about as long, and share the machine better than
    they queue."""
    archive = Archive.into(file)
    aside: list[Aside] = []
    try:
        async with (
            clients.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            account = await conn.fetchrow(
                "SELECT email, stripe_customer_id FROM accounts WHERE id = $1", account_id
            )
            if account is None:
                raise ExportRefused(f"unknown account {account_id}")
            instances = await conn.fetch(
                "SELECT id, database_url FROM instances WHERE account_id = $1", account_id
            )
            databases = [(f"instances/instance-{row['id']}.sql", row["database_url"]) for row in instances]
            dumping = asyncio.create_task(
                asyncio.to_thread(archive.dump_databases, databases if with_instances else [])
            )
            try:
                subject = await _subject(conn, account_id, account["stripe_customer_id"], instances)
                for place in data_map():
                    if place.export is not None:
                        aside.extend(await _category(conn, place.export, subject))
            finally:
                dumped = await asyncio.gather(dumping, return_exceptions=True)
        if isinstance(dumped[0], BaseException):
            raise dumped[0]
        written = _describe_dumps(archive, dumped[0])
        for item in aside:
            await asyncio.to_thread(archive.add, item.name, item.deflated)
            archive.describe(item.name, item.about_fr, item.about_en)
            if item.rows is not None:
                written[item.name] = item.rows
        await _customer(clients, archive, account["stripe_customer_id"], written)
    finally:
        for item in aside:
            item.deflated.close()
    archive.close()
    return account["email"], written


@dataclass(frozen=True)
class Aside:
    """A category's file, deflated aside while the dumps stream into the archive."""

    name: str
    deflated: Deflated
    about_fr: str
    about_en: str
    rows: int | None  # for the JSON file: how many rows


async def _subject(conn: Connection, account_id: int, customer: str | None, instances: list[Any]) -> Subject:
    return Subject(
        account_id, customer, await stripe_ids(conn, account_id, customer), [row["id"] for row in instances]
    )


async def _category(conn: Connection, export: Export, subject: Subject) -> list[Aside]:
    """One category: its JSON file and its CSV copy, read twice in the same snapshot."""
    as_json, as_csv = Deflated(), Deflated()
    try:
        count = await json_rows(as_json.entry, conn, export.query, subject)
        await csv_rows(as_csv.entry, conn, export.query, subject)
    except BaseException:
        as_json.close()
        as_csv.close()
        raise
    return [
        Aside(f"{export.category}.json", as_json, export.about_fr, export.about_en, count),
        Aside(f"{export.category}.csv", as_csv, export.about_fr, export.about_en, None),
    ]


def _describe_dumps(archive: Archive, sizes: dict[str, int]) -> dict[str, int]:
    for name in sizes:
        instance = name.removeprefix("instances/instance-").removesuffix(".sql")
        archive.describe(
            name,
            f"la base de données de votre instance {instance}, copiée avec pg_dump (SQL).",
            f"your instance {instance}'s database, copied with pg_dump (SQL).",
        )
    return dict(sizes)


async def _customer(
    clients: Exporting, archive: Archive, customer: str | None, written: dict[str, int]
) -> None:
    """The Stripe customer as Stripe returns it, when there is one."""
    if customer is None or (found := await _stripe_customer(clients, customer)) is None:
        return
    archive.json_document("stripe_customer.json", found)
    archive.describe(
        "stripe_customer.json",
        "votre compte client chez Stripe, notre prestataire de paiement, tel que Stripe le renvoie.",
        "your customer account at Stripe, our payment provider, as Stripe returns it.",
    )
    written["stripe_customer.json"] = 1


async def _stripe_customer(clients: Exporting, customer_id: str) -> dict[str, Any] | None:
    try:
        customer = await clients.gate.call(clients.stripe.v1.customers.retrieve_async, customer_id)
    except stripe.InvalidRequestError as error:
        if error.http_status != 404:
            raise ExportFailed(f"Stripe refused to give the customer: {error.http_status}") from None
        return None
    except stripe.StripeError as error:
        raise ExportFailed(f"the Stripe customer could not be read: {type(error).__name__}") from None
    found: dict[str, Any] = customer.to_dict()
    return found
