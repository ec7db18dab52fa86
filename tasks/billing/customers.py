"""Outbound: make the Stripe customer say what the account says.

`billing.push_account {account_id}` (and `bindery stripe push ACCOUNT_ID`) creates the
customer when the account has none, or updates it: email, name (business name, else
the contact's), address, preferred locale, and the EU VAT number as a tax id. The
password hash is never read. A create carries an idempotency key per account, so a
retry after a crash between Stripe's answer and our commit gets the same customer
back from Stripe; the customer's `metadata.account_id` links it again if the webhook
arrives first.
"""

from __future__ import annotations

from typing import Any

import stripe

from tasks.billing.objects import link_objects
from workers.db import Connection
from workers.errors import JobError
from workers.stripe_calls import RateLimitedStripe

FRENCH_SPEAKING = {"FR", "BE", "CH", "LU", "MC"}


def customer_params(account: dict[str, Any]) -> dict[str, Any]:
    """The Stripe customer fields for an account (only what Stripe needs to bill)."""
    contact = " ".join(part for part in (account["first_name"], account["last_name"]) if part)
    address = {
        key: value
        for key, value in (
            ("line1", account["address"]),
            ("postal_code", account["postal_code"]),
            ("country", account["country"]),
        )
        if value
    }
    params: dict[str, Any] = {
        "email": account["email"],
        "name": account["business_name"] or contact or None,
        "preferred_locales": ["fr" if account["country"] in FRENCH_SPEAKING else "en"],
        "metadata": {"account_id": str(account["id"])},
    }
    if address:
        params["address"] = address
    return {key: value for key, value in params.items() if value is not None}


async def push_account(
    conn: Connection, client: stripe.StripeClient, account_id: int, gate: RateLimitedStripe | None = None
) -> dict[str, Any]:
    # Every column but password_hash: bindery never reads it.
    row = await conn.fetchrow(
        """
        SELECT id, email, business_name, first_name, last_name, address, postal_code, country,
               vat_number, status, stripe_customer_id
          FROM accounts WHERE id = $1
        """,
        account_id,
    )
    if row is None:
        raise JobError(f"account {account_id} does not exist")
    account = dict(row)
    if account["status"] != "active":
        raise JobError(f"account {account_id} is disabled (an erasure is pending); not pushed")
    params = customer_params(account)
    gate = gate or RateLimitedStripe(None)
    customer_id = account["stripe_customer_id"]
    created = customer_id is None
    if created:
        customer = await gate.call(
            client.v1.customers.create_async,
            params=params,
            options={"idempotency_key": f"bindery-account-{account_id}-customer"},
        )
        customer_id = customer.id
        await conn.execute(
            "UPDATE accounts SET stripe_customer_id = $2, updated_at = now() "
            "WHERE id = $1 AND stripe_customer_id IS NULL",
            account_id,
            customer_id,
        )
        await link_objects(conn, customer_id)
    else:
        await gate.call(client.v1.customers.update_async, customer_id, params=params)
    if account["vat_number"]:
        await _ensure_vat_id(client, gate, customer_id, account["vat_number"])
    return {"customer_id": customer_id, "created": created}


async def _ensure_vat_id(
    client: stripe.StripeClient, gate: RateLimitedStripe, customer_id: str, vat_number: str
) -> None:
    existing = await gate.call(client.v1.customers.tax_ids.list_async, customer_id)
    if not any(tax_id.value == vat_number for tax_id in existing.data):
        await gate.call(
            client.v1.customers.tax_ids.create_async,
            customer_id,
            params={"type": "eu_vat", "value": vat_number},
        )
