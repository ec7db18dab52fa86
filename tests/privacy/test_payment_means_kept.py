"""Promise: "we also store … your SEPA mandate …, the last 4 digits of your card …
The full details of your credit card … are not stored by us."

Of a payment method, processing keeps an allow-list of fields and nothing else; the
tables have no column where more could go.
"""

from __future__ import annotations

import json

import asyncpg

from tests.billing_events import deliver, event, new_id, sepa_mandate

# Every column the payment tables have. A new column is a decision about what we keep
# of a customer's means of payment: make it here, against the policy, not by accident.
ALLOWED_COLUMNS = {
    "payment_methods": {
        "id",
        "customer_id",
        "account_id",
        "type",
        "card_brand",
        "last4",
        "exp_month",
        "exp_year",
        "sepa_bank_code",
        "sepa_country",
        "mandate_reference",
        "detached",
        "updated_at",
    },
    "mandates": {"id", "payment_method_id", "status", "type", "reference", "accepted_at", "updated_at"},
}


async def test_the_payment_tables_have_only_the_allowed_columns(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        """SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = ANY($1::text[])""",
        list(ALLOWED_COLUMNS),
    )
    columns: dict[str, set[str]] = {}
    for row in rows:
        columns.setdefault(row["table_name"], set()).add(row["column_name"])
    assert columns == ALLOWED_COLUMNS


async def test_of_a_card_only_brand_last4_and_expiry_are_kept(pool: asyncpg.Pool) -> None:
    customer, method = new_id("cus"), new_id("pm")
    card = {
        "id": method,
        "object": "payment_method",
        "type": "card",
        "customer": customer,
        "billing_details": {
            "name": "Jeanne Martin",
            "email": "jeanne@example.fr",
            "address": {"city": "Paris"},
        },
        "card": {
            "brand": "visa",
            "last4": "4242",
            "exp_month": 12,
            "exp_year": 2031,
            "fingerprint": "Xt5E",
            "country": "FR",
            "funding": "credit",
        },
    }
    await deliver(pool, event("payment_method.attached", card))
    row = await pool.fetchrow("SELECT * FROM payment_methods WHERE id = $1", method)
    assert (row["type"], row["card_brand"], row["last4"], row["exp_month"], row["exp_year"]) == (
        "card",
        "visa",
        "4242",
        12,
        2031,
    )
    assert "Jeanne" not in json.dumps(dict(row), default=str)
    await deliver(pool, event("payment_method.detached", {**card, "customer": None}))
    assert await pool.fetchval("SELECT count(*) FROM payment_methods WHERE id = $1", method) == 0


async def test_of_sepa_only_bank_code_country_last4_and_mandate_reference_are_kept(
    pool: asyncpg.Pool,
) -> None:
    customer, method, mandate = new_id("cus"), new_id("pm"), new_id("mandate")
    sepa = {
        "id": method,
        "object": "payment_method",
        "type": "sepa_debit",
        "customer": customer,
        "sepa_debit": {
            "bank_code": "37040044",
            "branch_code": "",
            "country": "DE",
            "last4": "3000",
            "fingerprint": "abc",
            "generated_from": None,
        },
    }
    mandate_object = sepa_mandate(mandate, method, "ABC123XYZ")
    await deliver(pool, event("payment_method.attached", sepa), event("mandate.updated", mandate_object))
    row = await pool.fetchrow("SELECT * FROM payment_methods WHERE id = $1", method)
    assert (row["sepa_bank_code"], row["sepa_country"], row["last4"], row["mandate_reference"]) == (
        "37040044",
        "DE",
        "3000",
        "ABC123XYZ",
    )
    kept = await pool.fetchrow("SELECT status, type, reference FROM mandates WHERE id = $1", mandate)
    assert tuple(kept) == ("active", "multi_use", "ABC123XYZ")
    assert "203.0.113.9" not in json.dumps([dict(row), dict(kept)], default=str)
