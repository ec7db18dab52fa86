"""Property: whatever shape of data the accounts have, erasing one leaves nothing of it
(verification passes, the row is gone) and changes nothing of any other account."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.erasure.requests import request_erasure
from tasks.erasure.saga import run_request
from tests.billing_events import deliver, event
from workers.resources import Resources

shapes = st.fixed_dictionaries(
    {
        "instances": st.integers(0, 2),
        "subscriptions": st.integers(0, 2),
        "cards": st.integers(0, 2),
        "invoices": st.integers(0, 2),
        "jobs": st.integers(0, 2),
        "stripe": st.booleans(),
        "names": st.booleans(),
    }
)


@pytest.fixture
def resources(worker_resources: Resources) -> Resources:
    return worker_resources


async def build(pool: asyncpg.Pool, database_url: str, shape: dict[str, Any]) -> int:
    tag = secrets.token_hex(5)
    customer = f"cus_prop{tag}" if shape["stripe"] else None  # unknown to Stripe: "already gone"
    account_id: int = await pool.fetchval(
        """INSERT INTO accounts (email, password_hash, first_name, last_name, stripe_customer_id)
           VALUES ($1, 'x', $2, $3, $4) RETURNING id""",
        f"prop.{tag}@example.org",
        f"Prénom{tag}" if shape["names"] else None,
        f"Nom{tag}" if shape["names"] else None,
        customer,
    )
    for n in range(shape["instances"]):
        await pool.execute(
            "INSERT INTO instances (account_id, name, database_url) VALUES ($1, $2, $3)",
            account_id,
            f"i{n}",
            database_url.rsplit("/", 1)[0] + f"/absent_{tag}_{n}",
        )
    if customer:
        objects = [
            *(
                (
                    "customer.subscription.created",
                    {
                        "id": f"sub_{n}{tag}",
                        "object": "subscription",
                        "customer": customer,
                        "status": "active",
                    },
                )
                for n in range(shape["subscriptions"])
            ),
            *(
                (
                    "payment_method.attached",
                    {
                        "id": f"pm_{n}{tag}",
                        "object": "payment_method",
                        "type": "card",
                        "customer": customer,
                        "card": {"brand": "visa", "last4": "4242"},
                    },
                )
                for n in range(shape["cards"])
            ),
            *(
                (
                    "invoice.paid",
                    {
                        "id": f"in_{n}{tag}",
                        "object": "invoice",
                        "customer": customer,
                        "customer_email": f"prop.{tag}@example.org",
                        "currency": "eur",
                        "status": "paid",
                        "created": 1_790_000_000,
                    },
                )
                for n in range(shape["invoices"])
            ),
        ]
        await deliver(pool, *(event(kind, obj) for kind, obj in objects))
    for _ in range(shape["jobs"]):
        await pool.execute(
            """INSERT INTO jobs (id, name, arguments, status)
               VALUES (gen_random_uuid(), 'erasure.request', $1, 'done')""",
            {"account_id": account_id},
        )
    return account_id


async def snapshot(pool: asyncpg.Pool, account_id: int) -> dict[str, Any]:
    """Everything of an account, as comparable values."""
    customer = await pool.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", account_id)
    return {
        "account": dict(await pool.fetchrow("SELECT * FROM accounts WHERE id = $1", account_id) or {}),
        "instances": [
            dict(r)
            for r in await pool.fetch("SELECT * FROM instances WHERE account_id = $1 ORDER BY id", account_id)
        ],
        **{
            table: [
                dict(r)
                for r in await pool.fetch(
                    "SELECT * FROM " + table + " WHERE account_id = $1 ORDER BY id",
                    account_id,
                )
            ]
            for table in ("subscriptions", "payment_methods", "invoices")
        },
        "events": await pool.fetchval(
            """SELECT count(*) FROM stripe_events
                WHERE payload IS NOT NULL AND payload #>> '{data,object,customer}' = $1""",
            customer,
        ),
        "jobs": await pool.fetchval(
            "SELECT count(*) FROM jobs WHERE arguments ->> 'account_id' = $1", str(account_id)
        ),
    }


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=st.lists(shapes, min_size=2, max_size=4), pick=st.integers(min_value=0))
async def test_erasing_one_account_leaves_nothing_of_it_and_changes_no_other(
    resources: Resources, database_url: str, shapes: list[dict[str, Any]], pick: int
) -> None:
    pool = resources.pool
    accounts = [await build(pool, database_url, shape) for shape in shapes]
    victim = accounts[pick % len(accounts)]
    others = {account_id: await snapshot(pool, account_id) for account_id in accounts if account_id != victim}

    async with pool.acquire() as conn:
        request, _ = await request_erasure(conn, victim, grace=timedelta(0), requested_by="test")
    # `done` only after verification found nothing of the account anywhere.
    assert await run_request(resources, request["id"]) == "done"
    assert await pool.fetchval("SELECT count(*) FROM accounts WHERE id = $1", victim) == 0
    assert (
        await pool.fetchval("SELECT count(*) FROM jobs WHERE arguments ->> 'account_id' = $1", str(victim))
        == 0
    )
    for account_id, before in others.items():
        assert await snapshot(pool, account_id) == before
