"""An account with something of it everywhere bindery reaches: rows in every billing
table, inbox payloads naming it, a Stripe customer, instance databases, backup objects
and a half-done multipart upload, job records. For the erasure tests."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import asyncpg

from tasks.erasure.context import Erasure, read_identity
from tasks.erasure.requests import request_erasure
from tasks.erasure.verify import find_leftovers
from tests.billing_events import deliver, event, sepa_mandate
from workers.db import database_name, drop_database, ensure_database
from workers.resources import Resources
from workers.s3 import s3_client
from workers.stripe_calls import RateLimitedStripe


@dataclass
class Customer:
    account_id: int
    email: str
    customer_id: str
    instance_ids: list[int]
    database_urls: list[str]
    object_ids: dict[str, str] = field(default_factory=dict)


async def make_customer(resources: Resources, database_url: str, *, instances: int = 2) -> Customer:
    pool = resources.pool
    tag = secrets.token_hex(4)
    email = f"Jeanne.{tag}@Example.fr"
    account_id: int = await pool.fetchval(
        """INSERT INTO accounts (email, password_hash, business_name, first_name, last_name, address,
                                 postal_code, country, vat_number)
           VALUES ($1, '$2y$10$opaque', $2, 'Jeanne', $3, '1 rue de la Paix', '75002', 'FR', 'FR12345678901')
           RETURNING id""",
        email,
        f"Boulangerie {tag}",
        f"Dupont{tag}",
    )
    assert resources.stripe is not None
    customer = await resources.stripe.v1.customers.create_async(
        params={"email": email, "name": f"Jeanne Dupont{tag}", "metadata": {"account_id": str(account_id)}}
    )
    await pool.execute("UPDATE accounts SET stripe_customer_id = $1 WHERE id = $2", customer.id, account_id)

    base = database_url.rsplit("/", 1)[0]
    urls, instance_ids = [], []
    for n in range(instances):
        url = f"{base}/inst_{tag}_{n}"
        await ensure_database(url)
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('a customer note')")
        await conn.close()
        instance_id = await pool.fetchval(
            "INSERT INTO instances (account_id, name, database_url) VALUES ($1, $2, $3) RETURNING id",
            account_id,
            f"shop-{tag}-{n}",
            url,
        )
        urls.append(url)
        instance_ids.append(instance_id)
    async with s3_client(resources.settings) as client:
        bucket = resources.settings.s3_bucket
        for instance_id in instance_ids:
            for day in ("2026-11-23", "2026-11-24", "2026-11-25"):
                key = f"instances/{instance_id}/{day}/{secrets.token_hex(4)}.dump.zst.age"
                await client.put_object(Bucket=bucket, Key=key, Body=b"age-encrypted bytes")
        await client.create_multipart_upload(
            Bucket=bucket, Key=f"instances/{instance_ids[0]}/2026-11-26/x.age"
        )

    ids = {
        name: f"{prefix}_{name}{tag}"
        for name, prefix in (
            ("subscription", "sub"),
            ("card", "pm"),
            ("sepa", "pm"),
            ("mandate", "mandate"),
            ("invoice", "in"),
        )
    }
    card = {
        "id": ids["card"],
        "object": "payment_method",
        "type": "card",
        "customer": customer.id,
        "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2031},
        "billing_details": {"name": f"Jeanne Dupont{tag}", "email": email},
    }
    sepa = {
        "id": ids["sepa"],
        "object": "payment_method",
        "type": "sepa_debit",
        "customer": customer.id,
        "sepa_debit": {"bank_code": "37040044", "country": "DE", "last4": "3000"},
    }
    mandate = sepa_mandate(ids["mandate"], ids["sepa"], f"REF{tag}")
    subscription = {
        "id": ids["subscription"],
        "object": "subscription",
        "customer": customer.id,
        "status": "active",
        "items": {"data": [{"price": {"id": "price_pro"}}]},
    }
    invoice = {
        "id": ids["invoice"],
        "object": "invoice",
        "customer": customer.id,
        "customer_email": email,
        "customer_name": f"Jeanne Dupont{tag}",
        "number": f"INV-{tag}",
        "currency": "eur",
        "total": 1900,
        "amount_due": 1900,
        "amount_paid": 1900,
        "status": "paid",
        "created": 1_790_000_000,
    }
    await deliver(
        pool,
        event("customer.updated", customer.to_dict()),
        event("customer.subscription.created", subscription),
        event("payment_method.attached", card),
        event("payment_method.attached", sepa),
        event("mandate.updated", mandate),
        event("invoice.paid", invoice),
    )
    await pool.execute(
        """INSERT INTO jobs (id, name, arguments, status)
           VALUES (gen_random_uuid(), 'billing.push_account', $1, 'done')""",
        {"account_id": account_id},
    )
    return Customer(account_id, email, customer.id, instance_ids, urls, ids)


async def remove_databases(customer: Customer) -> None:
    for url in customer.database_urls:
        await drop_database(url)


async def database_exists(pool: asyncpg.Pool, url: str) -> bool:
    return bool(
        await pool.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", database_name(url))
    )


async def objects_under(resources: Resources, instance_id: int) -> int:
    async with s3_client(resources.settings) as client:
        listing = await client.list_objects_v2(
            Bucket=resources.settings.s3_bucket, Prefix=f"instances/{instance_id}/"
        )
        uploads = await client.list_multipart_uploads(
            Bucket=resources.settings.s3_bucket, Prefix=f"instances/{instance_id}/"
        )
        return int(listing.get("KeyCount", 0)) + len(uploads.get("Uploads", []))


def mails_to(directory: Path, address: str) -> list[Any]:
    """The messages the SMTP sink caught for `address`."""
    messages = [
        message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in sorted(directory.glob("*.eml"))
    ]
    return [message for message in messages if message["To"] == address]


async def erase_now(resources: Resources, account_id: int) -> int:
    async with resources.pool.acquire() as conn:
        request, _ = await request_erasure(conn, account_id, grace=timedelta(0), requested_by="test")
    return int(request["id"])


async def assert_intact(resources: Resources, customer: Customer) -> None:
    pool = resources.pool
    assert await pool.fetchval("SELECT status FROM accounts WHERE id = $1", customer.account_id) == "active"
    for url in customer.database_urls:
        assert await database_exists(pool, url)
    for instance_id in customer.instance_ids:
        assert (
            await objects_under(resources, instance_id) == 4 if instance_id == customer.instance_ids[0] else 3
        )
    for table in ("subscriptions", "payment_methods", "invoices"):
        count = await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE account_id = $1", customer.account_id
        )
        assert count >= 1, table
    assert (
        await pool.fetchval("SELECT count(*) FROM mandates WHERE id = $1", customer.object_ids["mandate"])
        == 1
    )
    assert resources.stripe is not None
    assert not await find_leftovers(
        Erasure(0, -1, resources.settings, pool, resources.stripe, RateLimitedStripe(None))
    )


async def erasure_of(resources: Resources, account_id: int, instance_ids: list[int] | None = None) -> Erasure:
    """An erasure context for the account as it is now, outside any request (for verification)."""
    assert resources.stripe is not None
    return Erasure(
        0,
        account_id,
        resources.settings,
        resources.pool,
        resources.stripe,
        RateLimitedStripe(None),
        instance_ids=instance_ids or [],
        identity=await read_identity(resources.pool, account_id),
    )
