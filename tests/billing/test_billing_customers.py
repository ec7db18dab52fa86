"""Outbound customer sync against localstripe over real HTTP."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import asyncpg
import pytest
import stripe

from tasks.billing.customers import customer_params, push_account
from tests.processes import bindery_env, run_bindery
from workers.errors import JobError
from workers.settings import load_settings
from workers.stripe_client import make_stripe_client


async def new_account(pool: asyncpg.Pool, **fields: Any) -> int:
    values = {
        "email": f"{secrets.token_hex(5)}@example.fr",
        "password_hash": "$2y$10$neverSentAnywhere",
        "business_name": "Boulangerie Dupont",
        "first_name": "Jeanne",
        "last_name": "Dupont",
        "address": "1 rue de la Paix",
        "postal_code": "75002",
        "country": "FR",
        "vat_number": "FR12345678901",
        **fields,
    }
    columns = list(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    account_id: int = await pool.fetchval(
        "INSERT INTO accounts (" + ", ".join(columns) + ") VALUES (" + placeholders + ") RETURNING id",
        *values.values(),
    )
    return account_id


def test_customer_params_prefer_the_business_name_and_never_carry_the_password() -> None:
    account = {
        "id": 7,
        "email": "a@b.fr",
        "business_name": None,
        "first_name": "Ana",
        "last_name": "Lopez",
        "address": None,
        "postal_code": "28001",
        "country": "ES",
        "password_hash": "secret",
    }
    params = customer_params(account)
    assert params == {
        "email": "a@b.fr",
        "name": "Ana Lopez",
        "preferred_locales": ["en"],
        "metadata": {"account_id": "7"},
        "address": {"postal_code": "28001", "country": "ES"},
    }


async def test_push_creates_the_customer_then_updates_it(
    pool: asyncpg.Pool, stripe_client: stripe.StripeClient
) -> None:
    account_id = await new_account(pool)
    async with pool.acquire() as conn:
        first = await push_account(conn, stripe_client, account_id)
    assert first["created"] is True
    customer_id = await pool.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", account_id)
    assert customer_id == first["customer_id"]
    customer = await stripe_client.v1.customers.retrieve_async(customer_id)
    assert (customer.name, customer.address.postal_code, customer.preferred_locales) == (
        "Boulangerie Dupont",
        "75002",
        ["fr"],
    )
    assert customer.metadata["account_id"] == str(account_id)
    assert "neverSentAnywhere" not in str(customer)

    await pool.execute("UPDATE accounts SET business_name = 'Dupont & Fils' WHERE id = $1", account_id)
    async with pool.acquire() as conn:
        second = await push_account(conn, stripe_client, account_id)
        await push_account(conn, stripe_client, account_id)
    assert second == {"customer_id": customer_id, "created": False}
    assert (await stripe_client.v1.customers.retrieve_async(customer_id)).name == "Dupont & Fils"
    tax_ids = await stripe_client.v1.customers.tax_ids.list_async(customer_id)
    assert [(t.type, t.value) for t in tax_ids.data] == [("eu_vat", "FR12345678901")]


async def test_unknown_or_disabled_accounts_are_not_pushed(
    pool: asyncpg.Pool, stripe_client: stripe.StripeClient
) -> None:
    disabled = await new_account(pool, status="disabled")
    async with pool.acquire() as conn:
        with pytest.raises(JobError, match="does not exist"):
            await push_account(conn, stripe_client, 999_999_999)
        with pytest.raises(JobError, match="disabled"):
            await push_account(conn, stripe_client, disabled)
    assert await pool.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", disabled) is None


async def test_cli_push_names_the_customer(pool: asyncpg.Pool, stripe_fake: str) -> None:
    import asyncio

    account_id = await new_account(pool)
    result = await asyncio.to_thread(
        run_bindery, "stripe", "push", str(account_id), env=bindery_env(STRIPE_API_BASE=stripe_fake)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("created Stripe customer cus_")


async def test_stripe_down_is_retried_then_failed_and_visible(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    from tasks.billing.actors import PushAccount, push_account_job
    from workers.devstack.servers import free_port
    from workers.jobs import run_job
    from workers.resources import Resources

    monkeypatch.setenv("STRIPE_API_BASE", f"http://127.0.0.1:{free_port()}")  # nobody listens there
    settings = load_settings()
    stripe_client, http = make_stripe_client(settings)
    resources = Resources(settings=settings, pool=pool, stripe=stripe_client, stripe_http=http)
    account_id = await new_account(pool)
    job_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO jobs (id, name, arguments) VALUES ($1, 'billing.push_account', $2)",
        job_id,
        {"account_id": account_id},
    )
    try:
        with pytest.raises(stripe.APIConnectionError):
            await run_job(resources, job_id, push_account_job, PushAccount, max_retries=1)
        assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "queued"
        await run_job(resources, job_id, push_account_job, PushAccount, max_retries=1)
    finally:
        await http.close_async()
    row = await pool.fetchrow("SELECT status, attempts, error FROM jobs WHERE id = $1", job_id)
    assert tuple(row) == ("failed", 2, "APIConnectionError")
    assert await pool.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", account_id) is None


async def test_a_429_is_retried_after_its_retry_after(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stripe answers 429 with Retry-After first (served here, in Stripe's error shape)."""
    import time

    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from workers.stripe_calls import RateLimitedStripe

    calls: list[float] = []

    async def customers(request: web.Request) -> web.Response:
        calls.append(time.monotonic())
        if len(calls) == 1:
            error = {
                "error": {
                    "type": "invalid_request_error",
                    "code": "rate_limit",
                    "message": "Too many requests",
                }
            }
            return web.json_response(error, status=429, headers={"Retry-After": "1"})
        return web.json_response({"id": "cus_after429", "object": "customer", "metadata": {}})

    app = web.Application()
    app.router.add_post("/v1/customers", customers)
    async with TestServer(app) as server:
        monkeypatch.setenv("STRIPE_API_BASE", str(server.make_url("")).rstrip("/"))
        stripe_client, http = make_stripe_client(load_settings())
        account_id = await new_account(pool, vat_number=None)
        try:
            async with pool.acquire() as conn:
                outcome = await push_account(conn, stripe_client, account_id, RateLimitedStripe(None))
        finally:
            await http.close_async()
    assert outcome == {"customer_id": "cus_after429", "created": True}
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.95


async def test_catching_up_stores_the_events_stripe_has_and_the_inbox_lacks(
    pool: asyncpg.Pool, stripe_client: stripe.StripeClient
) -> None:
    from tasks.billing.catch_up import catch_up_events
    from tasks.billing.processing import process_event
    from workers.stripe_calls import RateLimitedStripe

    account_id = await new_account(pool)
    # A customer made in Stripe whose webhook never reached us.
    metadata = {"account_id": str(account_id)}
    customer = await stripe_client.v1.customers.create_async(params={"metadata": metadata})
    async with pool.acquire() as conn:
        stored = await catch_up_events(conn, stripe_client, RateLimitedStripe(None))
        again = await catch_up_events(conn, stripe_client, RateLimitedStripe(None))
    created = await pool.fetchval(
        "SELECT id FROM stripe_events WHERE type = 'customer.created' AND object_id = $1", customer.id
    )
    assert created in stored
    assert created not in again  # already in the inbox
    assert await process_event(pool, created) == "done"
    assert (
        await pool.fetchval("SELECT stripe_customer_id FROM accounts WHERE id = $1", account_id)
        == customer.id
    )
    assert await pool.fetchval("SELECT cursor FROM stripe_sync_state WHERE name = 'events'")


async def test_backfill_reads_current_objects_and_resumes_from_its_position(
    pool: asyncpg.Pool, stripe_client: stripe.StripeClient, stripe_fake: str
) -> None:
    from tasks.billing.backfill import backfill
    from workers.stripe_calls import RateLimitedStripe

    accounts = [await new_account(pool) for _ in range(3)]
    by_customer = {}
    for account_id in accounts:
        customer = await stripe_client.v1.customers.create_async(
            params={"metadata": {"account_id": str(account_id)}}
        )
        by_customer[customer.id] = account_id
    page = await stripe_client.v1.customers.list_async(params={"limit": 100})
    listed = [customer.id for customer in page.data if customer.id in by_customer]

    async def linked(customer_id: str) -> str | None:
        value: str | None = await pool.fetchval(
            "SELECT stripe_customer_id FROM accounts WHERE id = $1", by_customer[customer_id]
        )
        return value

    # A previous run stopped right after the first of ours, in list order.
    await pool.execute(
        "INSERT INTO stripe_sync_state (name, cursor) VALUES ('backfill:customers', $1)", listed[0]
    )
    async with pool.acquire() as conn:
        await backfill(conn, stripe_client, RateLimitedStripe(None))
    assert [await linked(c) for c in listed[1:]] == listed[1:]  # resumed after the stored position
    assert await linked(listed[0]) is None  # not redone: the interrupted run had passed it
    assert await pool.fetchval("SELECT count(*) FROM stripe_sync_state WHERE name LIKE 'backfill:%'") == 0

    env = bindery_env(STRIPE_API_BASE=stripe_fake)
    result = await asyncio.to_thread(run_bindery, "stripe", "backfill", env=env)
    assert result.returncode == 0, result.stderr
    assert await linked(listed[0]) == listed[0]  # a complete run starts from the beginning
    bad = await asyncio.to_thread(run_bindery, "stripe", "backfill", "--since", "last week")
    assert bad.returncode == 2 and "--since" in bad.stderr
