"""Stripe objects into our tables: allow-listed columns only, one function per object kind.

Each function takes the object as Stripe sends it (in an event's `data.object`) and
upserts what we keep. Nothing else of the payload is stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from workers.db import Connection

Obj = dict[str, Any]
Apply = Callable[[Connection, Obj], Awaitable[None]]


def _time(value: Any) -> datetime | None:
    return (
        datetime.fromtimestamp(value, UTC) if isinstance(value, int) and not isinstance(value, bool) else None
    )


def reference_id(value: Any) -> str | None:
    """Stripe expands some references into objects; we keep only the id."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


async def unlink_customer(conn: Connection, customer: Obj) -> None:
    await conn.execute(
        "UPDATE accounts SET stripe_customer_id = NULL, updated_at = now() WHERE stripe_customer_id = $1",
        customer["id"],
    )


async def link_objects(conn: Connection, customer_id: str) -> None:
    """Point the customer's subscriptions, payment methods and invoices at its account:
    those applied before the customer was linked were stored with no account."""
    for table in ("subscriptions", "payment_methods", "invoices"):
        # The table names are ours, from the tuple above.
        await conn.execute(
            f"""UPDATE {table} SET account_id = a.id, updated_at = now()
                  FROM accounts a
                 WHERE a.stripe_customer_id = $1 AND {table}.customer_id = $1
                   AND {table}.account_id IS DISTINCT FROM a.id""",  # nosec B608
            customer_id,
        )


async def apply_customer(conn: Connection, customer: Obj) -> None:
    """Link the account named in the customer's metadata, if it has no customer yet, and
    the objects of the customer that arrived before it."""
    if customer.get("deleted"):  # what Stripe returns for a deleted customer
        await unlink_customer(conn, customer)
        return
    metadata = customer.get("metadata") or {}
    account_id = str(metadata.get("account_id", ""))
    if account_id.isdigit():
        linked = await conn.execute(
            """
            UPDATE accounts SET stripe_customer_id = $1, updated_at = now()
             WHERE id = $2 AND stripe_customer_id IS NULL
               AND NOT EXISTS (SELECT 1 FROM accounts WHERE stripe_customer_id = $1)
            """,
            customer["id"],
            int(account_id),
        )
        if linked != "UPDATE 0":
            await link_objects(conn, customer["id"])


async def apply_subscription(conn: Connection, subscription: Obj) -> None:
    items = (subscription.get("items") or {}).get("data") or [{}]
    first_item = items[0] if isinstance(items[0], dict) else {}
    # Since API version 2025-03-31 the billing period lives on the items.
    period_start = subscription.get("current_period_start", first_item.get("current_period_start"))
    period_end = subscription.get("current_period_end", first_item.get("current_period_end"))
    customer_id = reference_id(subscription.get("customer"))
    await conn.execute(
        """
        INSERT INTO subscriptions (id, customer_id, account_id, status, price_id,
                                   current_period_start, current_period_end, cancel_at_period_end)
        VALUES ($1, $2, (SELECT id FROM accounts WHERE stripe_customer_id = $2), $3, $4, $5, $6, $7)
        ON CONFLICT (id) DO UPDATE SET
            customer_id = EXCLUDED.customer_id, account_id = EXCLUDED.account_id,
            status = EXCLUDED.status, price_id = EXCLUDED.price_id,
            current_period_start = EXCLUDED.current_period_start,
            current_period_end = EXCLUDED.current_period_end,
            cancel_at_period_end = EXCLUDED.cancel_at_period_end, updated_at = now()
        """,
        subscription["id"],
        customer_id,
        subscription["status"],
        reference_id(first_item.get("price") or {}) if first_item else None,
        _time(period_start),
        _time(period_end),
        bool(subscription.get("cancel_at_period_end", False)),
    )


async def apply_payment_method(conn: Connection, method: Obj) -> None:
    customer_id = reference_id(method.get("customer"))
    if customer_id is None:  # detached: we keep nothing of it
        await conn.execute("DELETE FROM payment_methods WHERE id = $1", method["id"])
        return
    kind = method.get("type")
    if kind not in ("card", "sepa_debit"):
        return  # other payment means are not offered; nothing of them is kept
    details = method.get(kind) or {}
    is_card = kind == "card"
    await conn.execute(
        """
        INSERT INTO payment_methods (id, customer_id, account_id, type, card_brand, last4, exp_month,
                                     exp_year, sepa_bank_code, sepa_country, mandate_reference)
        VALUES ($1, $2, (SELECT id FROM accounts WHERE stripe_customer_id = $2), $3, $4, $5, $6, $7, $8, $9,
                -- A mandate applied before its method left its reference waiting here.
                CASE WHEN $3 = 'sepa_debit' THEN
                    (SELECT reference FROM mandates WHERE payment_method_id = $1
                      ORDER BY accepted_at DESC NULLS LAST LIMIT 1) END)
        ON CONFLICT (id) DO UPDATE SET
            customer_id = EXCLUDED.customer_id, account_id = EXCLUDED.account_id, type = EXCLUDED.type,
            card_brand = EXCLUDED.card_brand, last4 = EXCLUDED.last4, exp_month = EXCLUDED.exp_month,
            exp_year = EXCLUDED.exp_year, sepa_bank_code = EXCLUDED.sepa_bank_code,
            sepa_country = EXCLUDED.sepa_country, mandate_reference = EXCLUDED.mandate_reference,
            updated_at = now()
        """,
        method["id"],
        customer_id,
        kind,
        details.get("brand") if is_card else None,
        details.get("last4"),
        details.get("exp_month") if is_card else None,
        details.get("exp_year") if is_card else None,
        None if is_card else details.get("bank_code"),
        None if is_card else details.get("country"),
    )


async def apply_mandate(conn: Connection, mandate: Obj) -> None:
    details = (mandate.get("payment_method_details") or {}).get("sepa_debit") or {}
    acceptance = mandate.get("customer_acceptance") or {}
    payment_method_id = reference_id(mandate.get("payment_method"))
    await conn.execute(
        """
        INSERT INTO mandates (id, payment_method_id, status, type, reference, accepted_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (id) DO UPDATE SET
            payment_method_id = EXCLUDED.payment_method_id, status = EXCLUDED.status,
            type = EXCLUDED.type, reference = EXCLUDED.reference, accepted_at = EXCLUDED.accepted_at,
            updated_at = now()
        """,
        mandate["id"],
        payment_method_id,
        mandate["status"],
        mandate["type"],
        details.get("reference"),
        _time(acceptance.get("accepted_at")),
    )
    await conn.execute(
        "UPDATE payment_methods SET mandate_reference = $2, updated_at = now() "
        "WHERE id = $1 AND type = 'sepa_debit'",
        payment_method_id,
        details.get("reference"),
    )


async def apply_invoice(conn: Connection, invoice: Obj) -> None:
    customer_id = reference_id(invoice.get("customer"))
    transitions = invoice.get("status_transitions") or {}
    await conn.execute(
        """
        INSERT INTO invoices (id, customer_id, account_id, number, currency, total, amount_due,
                              amount_paid, status, created, due_date, paid_at, hosted_invoice_url)
        VALUES ($1, $2, (SELECT id FROM accounts WHERE stripe_customer_id = $2),
                $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        ON CONFLICT (id) DO UPDATE SET
            customer_id = EXCLUDED.customer_id, account_id = EXCLUDED.account_id,
            number = EXCLUDED.number, currency = EXCLUDED.currency, total = EXCLUDED.total,
            amount_due = EXCLUDED.amount_due, amount_paid = EXCLUDED.amount_paid,
            status = EXCLUDED.status, created = EXCLUDED.created, due_date = EXCLUDED.due_date,
            paid_at = EXCLUDED.paid_at, hosted_invoice_url = EXCLUDED.hosted_invoice_url, updated_at = now()
        """,
        invoice["id"],
        customer_id,
        invoice.get("number"),
        invoice["currency"],
        invoice.get("total", 0),
        invoice.get("amount_due", 0),
        invoice.get("amount_paid", 0),
        invoice.get("status"),
        _time(invoice.get("created")),
        _time(invoice.get("due_date")),
        _time(transitions.get("paid_at")),
        invoice.get("hosted_invoice_url"),
    )


def handler_for(event_type: str) -> Apply | None:
    """The function that applies an event's object, or None for types we ignore."""
    if event_type.startswith("customer.subscription."):
        return apply_subscription
    if event_type in ("customer.created", "customer.updated"):
        return apply_customer
    if event_type == "customer.deleted":
        return unlink_customer
    if event_type in (
        "payment_method.attached",
        "payment_method.detached",
        "payment_method.updated",
        "payment_method.automatically_updated",
    ):
        return apply_payment_method
    if event_type == "mandate.updated":
        return apply_mandate
    if event_type in (
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_failed",
        "invoice.voided",
        "invoice.marked_uncollectible",
        "invoice.updated",
    ):
        return apply_invoice
    return None
