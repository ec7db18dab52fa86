"""The erasure ledger: keyed hashes (HMAC-SHA256 with ERASURE_LEDGER_KEY) of every erased
account's id, lower-cased email and Stripe customer id.

It holds no personal data, yet lets a database restored from before an erasure be
erased again (`bindery erasure reapply`). Each entry also holds when the erased account
was created. An account is the erased one come back when one of its id, email or
customer id hashes to an entry *and* it was created at that entry's time: a copy
restored from a dump has the same creation time; a new sign-up with the same address,
or a new account given a reused id after a restore, has a later one and is left alone.
Entries written before creation times were kept match an account created before the
erasure.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from workers.db import Connection


def digest(key: str, kind: str, value: str) -> bytes:
    normalised = value.strip().lower() if kind == "email" else value
    return hmac.digest(key.encode(), f"{kind}:{normalised}".encode(), hashlib.sha256)


def identity_digests(
    key: str, account_id: int, email: str | None, customer_id: str | None
) -> list[tuple[str, bytes]]:
    values = {"account_id": str(account_id), "email": email, "stripe_customer_id": customer_id}
    return [(kind, digest(key, kind, value)) for kind, value in values.items() if value]


async def record(conn: Connection, digests: list[tuple[str, bytes]], created_at: datetime | None) -> None:
    """The erased account's digests, with the time the account was created."""
    await conn.executemany(
        """INSERT INTO erasure_ledger (kind, digest, account_created_at) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING""",
        [(kind, value, created_at) for kind, value in digests],
    )


async def erased_accounts(ledger: Connection, target: Connection, key: str) -> list[int]:
    """Accounts in `target` that `ledger`'s entries say were erased."""
    entries: dict[tuple[str, bytes], list[tuple[datetime | None, datetime]]] = {}
    for row in await ledger.fetch("SELECT kind, digest, account_created_at, erased_at FROM erasure_ledger"):
        entries.setdefault((row["kind"], bytes(row["digest"])), []).append(
            (row["account_created_at"], row["erased_at"])
        )
    found = []
    for row in await target.fetch("SELECT id, email, stripe_customer_id, created_at FROM accounts"):
        digests = identity_digests(key, row["id"], row["email"], row["stripe_customer_id"])
        if any(_same_account(row["created_at"], entries.get(item, [])) for item in digests):
            found.append(row["id"])
    return found


def _same_account(created_at: datetime, entries: list[tuple[datetime | None, datetime]]) -> bool:
    return any(
        created_at == erased_created if erased_created is not None else created_at < erased_at
        for erased_created, erased_at in entries
    )
