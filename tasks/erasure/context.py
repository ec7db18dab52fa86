"""What every erasure step gets: the request, the account's identity while it exists,
and the clients the steps call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import stripe

from tasks.billing.stripe_calls import StripeGate
from workers.s3 import s3_client
from workers.settings import Settings


@dataclass(frozen=True)
class Identity:
    """What identifies the customer, read from the account row; never stored elsewhere."""

    email: str
    names: list[str]
    customer_id: str | None


@dataclass
class Erasure:
    request_id: int
    account_id: int
    settings: Settings
    pool: asyncpg.Pool
    stripe: stripe.StripeClient
    gate: StripeGate
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


async def load_identity(conn: asyncpg.Pool | Any, account_id: int) -> Identity | None:
    row = await conn.fetchrow(
        """SELECT email, business_name, first_name, last_name, stripe_customer_id
             FROM accounts WHERE id = $1""",
        account_id,
    )
    if row is None:
        return None
    full_name = " ".join(part for part in (row["first_name"], row["last_name"]) if part)
    # Short names would match unrelated text; what verification looks for must be specific.
    names = [name for name in (full_name, row["business_name"]) if name and len(name) >= 4]
    return Identity(email=row["email"], names=names, customer_id=row["stripe_customer_id"])
