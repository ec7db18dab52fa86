"""What every erasure step gets: the request, the identity captured when it first ran,
and the clients the steps call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import stripe

from tasks.billing import bury, owned_objects
from workers.db import Connection
from workers.s3 import s3_client
from workers.settings import Settings
from workers.stripe_calls import RateLimitedStripe


@dataclass(frozen=True)
class Identity:
    """Who the erasure is about, captured once (`capture_identity`) and used by every step."""

    email: str | None
    names: list[str]
    customer_id: str | None
    object_ids: list[str]  # the Stripe objects the customer owned
    account_created_at: datetime | None

    @property
    def stripe_ids(self) -> list[str]:
        return self.object_ids + ([self.customer_id] if self.customer_id else [])


@dataclass
class Erasure:
    request_id: int
    account_id: int
    settings: Settings
    pool: asyncpg.Pool
    stripe: stripe.StripeClient
    gate: RateLimitedStripe
    # The account's instance ids, kept in the request's report (ids only) so that the
    # backup objects can still be found after the instance rows are gone.
    instance_ids: list[int] = field(default_factory=list)
    identity: Identity | None = None
    s3: Any = None  # the process's S3 client, if it has one
    # False when re-applying a past erasure to a restored database: the customer was told.
    notify: bool = True


@asynccontextmanager
async def s3_session(erasure: Erasure) -> AsyncIterator[Any]:
    """The process's S3 client, or one opened for this call."""
    if erasure.s3 is not None:
        yield erasure.s3
        return
    async with s3_client(erasure.settings) as client:
        yield client


async def read_identity(conn: Connection, account_id: int) -> Identity | None:
    """The account's identity as its rows are now (None: no such account)."""
    account = await conn.fetchrow(
        """SELECT email, business_name, first_name, last_name, stripe_customer_id, created_at
             FROM accounts WHERE id = $1""",
        account_id,
    )
    if account is None:
        return None
    customer = account["stripe_customer_id"]
    objects = await owned_objects(conn, account_id, customer)
    full_name = " ".join(part for part in (account["first_name"], account["last_name"]) if part)
    # Short names would match unrelated text; what verification looks for must be specific.
    names = [name for name in (full_name, account["business_name"]) if name and len(name) >= 4]
    return Identity(account["email"], names, customer, objects, account["created_at"])


async def capture_identity(pool: asyncpg.Pool, request_id: int, account_id: int) -> Identity | None:
    """The request's identity: captured from the account's rows on its first run, and its
    Stripe ids buried at the same commit (tasks/billing/tombstones.py), so that from then
    on no webhook can bring back what the steps delete; read back on every later run.
    None when the account row was gone before the first run."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT * FROM erasure_subjects WHERE request_id = $1", request_id)
        if row is not None:
            return Identity(
                row["email"],
                list(row["names"]),
                row["customer_id"],
                list(row["object_ids"]),
                row["account_created_at"],
            )
        # Locked: a customer area's change of address waits for the capture.
        await conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
        identity = await read_identity(conn, account_id)
        if identity is None:
            return None
        await conn.execute(
            """INSERT INTO erasure_subjects
                   (request_id, email, names, customer_id, object_ids, account_created_at)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            request_id,
            identity.email,
            identity.names,
            identity.customer_id,
            identity.object_ids,
            identity.account_created_at,
        )
        await bury(conn, identity.stripe_ids)
    return identity
