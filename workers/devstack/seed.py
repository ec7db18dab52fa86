"""`bindery dev seed`: a handful of customers made the way production makes them, so that
a first `make run` shows a living console.

Accounts and instances are written as the customer area writes them; the rest goes
through bindery's own front doors on the running stack: the job API (push to Stripe,
back up now, ask for an erasure, an export), the Stripe fake (a card and a subscription,
whose webhooks then flow to the web process), the CLI (a draft breach campaign).
Only an empty catalog is seeded (no account at all): a database someone works with is
left as it is, and seeding twice seeds once.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import stripe

from workers.db import create_pool, database_name, ensure_database
from workers.devstack.servers import VENV_BIN
from workers.settings import Settings
from workers.stripe_client import make_stripe_client

DOMAIN = "seed.bindery.localhost"
INCIDENT = Path(__file__).parent / "dev-incident.toml"
CUSTOMERS = [
    ("Jeanne", "Martin", "Boulangerie Martin", True),
    ("Ahmed", "Benali", "Atelier Benali", True),
    ("Léa", "Dubois", "Cabinet Dubois", True),
    ("Marc", "Petit", None, False),
]
# Stripe's documented test card: the fake accepts it, and it is nobody's.
TEST_CARD: Any = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}


class SeedFailed(RuntimeError):
    pass


async def seed(settings: Settings, api: str, token: str) -> dict[str, Any]:
    """Seed the running stack at `api` with the development token; what was made."""
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        if await pool.fetchval("SELECT EXISTS (SELECT 1 FROM accounts)"):
            return {"seeded": False, "reason": "the database has accounts already"}
        accounts = [await _customer(pool, settings, n, *customer) for n, customer in enumerate(CUSTOMERS)]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            for account_id, _, _ in accounts:
                await _job(http, api, "billing.push_account", {"account_id": account_id})
            customers = await _stripe_customers(pool, [account_id for account_id, _, _ in accounts])
            await _subscribe(settings, [customers[a] for a, _, paid in accounts if paid])
            for _, instance_id, paid in accounts:
                if paid:
                    await _job(http, api, "backups.run_now", {"instance_id": instance_id})
            await _job(http, api, "privacy.export", {"account_id": accounts[0][0]})
            await _job(http, api, "erasure.request", {"account_id": accounts[-1][0]})
    finally:
        await pool.close()
    campaign = _draft_campaign()
    return {"seeded": True, "accounts": [a for a, _, _ in accounts], "draft_campaign": campaign}


async def _customer(
    pool: asyncpg.Pool, settings: Settings, n: int, first: str, last: str, business: str | None, paid: bool
) -> tuple[int, int, bool]:
    """An account and its instance, whose database holds a little of a shop."""
    account_id: int = await pool.fetchval(
        """INSERT INTO accounts (email, password_hash, first_name, last_name, business_name, address,
                                 postal_code, country)
           VALUES ($1, 'seed', $2, $3, $4, $5, '75011', 'FR') RETURNING id""",
        f"{first.lower().replace('é', 'e')}.{last.lower()}@{DOMAIN}",
        first,
        last,
        business,
        f"{n + 1} rue Oberkampf",
    )
    # Named after the catalog's database: two stacks on one machine never share a shop.
    catalog = database_name(settings.database_url)
    url = settings.database_url.rsplit("/", 1)[0] + f"/{catalog}_shop_{account_id}"
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS orders AS"
            " SELECT g AS id, now() - g * interval '1 hour' AS placed_at, (g % 90) + 10 AS total_eur"
            " FROM generate_series(1, 2000) g"
        )
    finally:
        await conn.close()
    instance_id: int = await pool.fetchval(
        "INSERT INTO instances (account_id, name, database_url) VALUES ($1, 'shop', $2) RETURNING id",
        account_id,
        url,
    )
    return account_id, instance_id, paid


async def _job(http: aiohttp.ClientSession, api: str, name: str, arguments: dict[str, Any]) -> None:
    async with http.post(f"{api}/jobs/{name}", json=arguments) as answer:
        if answer.status != 202:
            raise SeedFailed(f"POST /jobs/{name} answered {answer.status}: {await answer.text()}")


async def _stripe_customers(pool: asyncpg.Pool, account_ids: list[int]) -> dict[int, str]:
    """Wait (a minute at most) for the worker's billing.push_account to give each account
    its Stripe customer."""
    deadline = time.monotonic() + 60
    while True:
        rows = await pool.fetch(
            """SELECT id, stripe_customer_id FROM accounts
                WHERE id = ANY($1::bigint[]) AND stripe_customer_id IS NOT NULL""",
            account_ids,
        )
        if len(rows) == len(account_ids):
            return {row["id"]: row["stripe_customer_id"] for row in rows}
        if time.monotonic() > deadline:
            raise SeedFailed("the worker did not push the seed's accounts to Stripe within a minute")
        await asyncio.sleep(0.5)


async def _subscribe(settings: Settings, customer_ids: list[str]) -> None:
    """What the customer area's checkout does at Stripe: a card, a monthly subscription."""
    client, http = make_stripe_client(settings)
    try:
        product = await client.v1.products.create_async(params={"name": "Pro"})
        plan = await client.v1.plans.create_async(
            params={"product": product.id, "currency": "eur", "amount": 1900, "interval": "month"}
        )
        for customer_id in customer_ids:
            card = await client.v1.payment_methods.create_async(params={"type": "card", "card": TEST_CARD})
            await client.v1.payment_methods.attach_async(card.id, params={"customer": customer_id})
            await client.v1.customers.update_async(
                customer_id, params={"invoice_settings": {"default_payment_method": card.id}}
            )
            await client.v1.subscriptions.create_async(
                params={"customer": customer_id, "items": [{"plan": plan.id}]}
            )
    except stripe.StripeError as error:
        raise SeedFailed(
            f"the Stripe fake refused the seed: {error.user_message or type(error).__name__}"
        ) from None
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]


def _draft_campaign() -> int:
    """Through the CLI, which inherits this process's environment (its DATABASE_URL)."""
    # bandit: a fixed argv of our own command, no shell
    created = subprocess.run(  # nosec B603
        [str(VENV_BIN / "bindery"), "breach", "create", "--incident", str(INCIDENT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if created.returncode != 0:
        raise SeedFailed(f"bindery breach create failed: {created.stderr.strip()}")
    return int(created.stdout.split()[1])
