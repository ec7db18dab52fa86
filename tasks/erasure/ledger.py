"""The erasure ledger: keyed hashes (HMAC-SHA256 with ERASURE_LEDGER_KEY) of every erased
account's id, lower-cased email and Stripe customer id.

It holds no personal data, yet lets a database restored from before an erasure be
erased again (`bindery erasure reapply`): an account whose id, email or customer id
hashes to a ledger entry was erased and must not come back.
"""

from __future__ import annotations

import hashlib
import hmac

from workers.db import Connection


def digest(key: str, kind: str, value: str) -> bytes:
    normalised = value.strip().lower() if kind == "email" else value
    return hmac.digest(key.encode(), f"{kind}:{normalised}".encode(), hashlib.sha256)


def identity_digests(
    key: str, account_id: int, email: str | None, customer_id: str | None
) -> list[tuple[str, bytes]]:
    values = {"account_id": str(account_id), "email": email, "stripe_customer_id": customer_id}
    return [(kind, digest(key, kind, value)) for kind, value in values.items() if value]


async def record(conn: Connection, digests: list[tuple[str, bytes]]) -> None:
    await conn.executemany(
        "INSERT INTO erasure_ledger (kind, digest) VALUES ($1, $2) ON CONFLICT DO NOTHING", digests
    )


async def erased_accounts(ledger: Connection, target: Connection, key: str) -> list[int]:
    """Accounts in `target` that `ledger`'s entries say were erased."""
    known = {
        (row["kind"], bytes(row["digest"]))
        for row in await ledger.fetch("SELECT kind, digest FROM erasure_ledger")
    }
    found = []
    for row in await target.fetch("SELECT id, email, stripe_customer_id FROM accounts"):
        digests = identity_digests(key, row["id"], row["email"], row["stripe_customer_id"])
        if any(item in known for item in digests):
            found.append(row["id"])
    return found
