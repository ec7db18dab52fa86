"""Asking Stripe (localstripe behind stripe_extras, over HTTP) what an event cannot say:
ties, setup intents' payment methods and mandates, and the backfill of both."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import asyncpg
import pytest
import stripe

from tasks.billing.backfill import backfill
from tasks.billing.refetch import Mode, Refetcher
from tests.billing_events import deliver, event, new_account
from tests.stripe_fake import IBAN, sepa_set_up
from workers.errors import JobError
from workers.stripe_calls import RateLimitedStripe


async def customer_for_new_account(pool: asyncpg.Pool, client: stripe.StripeClient) -> tuple[int, str]:
    account_id = await new_account(pool)
    customer = await client.v1.customers.create_async(params={"metadata": {"account_id": str(account_id)}})
    await pool.execute("UPDATE accounts SET stripe_customer_id = $1 WHERE id = $2", customer.id, account_id)
    return account_id, customer.id


async def attached_card(client: stripe.StripeClient, customer_id: str) -> dict[str, Any]:
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}
    method = await client.v1.payment_methods.create_async(params={"type": "card", "card": card})
    attached = await client.v1.payment_methods.attach_async(method.id, params={"customer": customer_id})
    result: dict[str, Any] = attached.to_dict()
    return result


@pytest.mark.parametrize(
    ("mode", "kept_after_tie", "kept_after_stale_detach"),
    [("never", False, False), ("when-needed", True, False), ("always", True, True)],
)
async def test_stripe_refetch_decides_what_a_payload_cannot(
    pool: asyncpg.Pool,
    stripe_client: stripe.StripeClient,
    mode: Mode,
    kept_after_tie: bool,
    kept_after_stale_detach: bool,
) -> None:
    refetch = Refetcher(stripe_client, RateLimitedStripe(None), mode)
    _, customer_id = await customer_for_new_account(pool, stripe_client)

    async def kept(method_id: str) -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM payment_methods WHERE id = $1", method_id))

    # Stripe has the card attached; two events of the same second disagree, the wrong one last.
    card = await attached_card(stripe_client, customer_id)
    same_second = 1_795_000_000
    attached = event("payment_method.attached", card, created=same_second)
    detached = event("payment_method.detached", {**card, "customer": None}, created=same_second)
    assert await deliver(pool, attached, detached, refetch=refetch) == ["done", "done"]
    assert await kept(card["id"]) is kept_after_tie

    # No tie: a later event's payload is believed, unless every event is re-fetched.
    other = await attached_card(stripe_client, customer_id)
    await deliver(pool, event("payment_method.attached", other, created=same_second))
    await deliver(
        pool,
        event("payment_method.detached", {**other, "customer": None}, created=same_second + 5),
        refetch=refetch,
    )
    assert await kept(other["id"]) is kept_after_stale_detach


async def test_an_object_stripe_no_longer_has_is_applied_from_the_payload(
    pool: asyncpg.Pool, stripe_client: stripe.StripeClient
) -> None:
    refetch = Refetcher(stripe_client, RateLimitedStripe(None), "always")
    _, customer_id = await customer_for_new_account(pool, stripe_client)
    card = await attached_card(stripe_client, customer_id)
    gone = {**card, "id": "pm_neverseenbystripe0"}
    assert await deliver(pool, event("payment_method.attached", gone), refetch=refetch) == ["done"]
    assert await pool.fetchval("SELECT last4 FROM payment_methods WHERE id = $1", gone["id"]) == "4242"


async def test_a_succeeded_setup_intent_brings_the_sepa_method_and_its_mandate(
    pool: asyncpg.Pool, stripe_client: stripe.StripeClient
) -> None:
    account_id, customer_id = await customer_for_new_account(pool, stripe_client)
    intent = await sepa_set_up(stripe_client, customer_id)
    refetch = Refetcher(stripe_client, RateLimitedStripe(None), "never")  # linked objects are fetched anyway
    assert await deliver(pool, event("setup_intent.succeeded", intent), refetch=refetch) == ["done"]

    mandate = (await stripe_client.v1.mandates.retrieve_async(intent["mandate"])).to_dict()
    reference = mandate["payment_method_details"]["sepa_debit"]["reference"]
    method = await pool.fetchrow("SELECT * FROM payment_methods WHERE id = $1", intent["payment_method"])
    assert (method["account_id"], method["type"], method["sepa_bank_code"], method["sepa_country"]) == (
        account_id,
        "sepa_debit",
        "37040044",
        "DE",
    )
    assert (method["last4"], method["mandate_reference"]) == ("3000", reference)
    kept = await pool.fetchrow("SELECT * FROM mandates WHERE id = $1", intent["mandate"])
    assert (kept["status"], kept["type"], kept["reference"]) == ("active", "multi_use", reference)
    stored = json.dumps([dict(method), dict(kept)], default=str)
    assert IBAN not in stored and "203.0.113.9" not in stored and "Mozilla" not in stored

    # Without a Stripe client the event cannot be followed: it stays to be retried, with the reason.
    again = event("setup_intent.succeeded", intent)
    with pytest.raises(JobError):
        await deliver(pool, again)
    row = await pool.fetchrow("SELECT state, last_error FROM stripe_events WHERE id = $1", again["id"])
    assert row["state"] == "received" and "Stripe client" in row["last_error"]


async def test_backfill_brings_cards_sepa_methods_and_mandates(
    pool: asyncpg.Pool, stripe_client: stripe.StripeClient, stripe_fake: str
) -> None:
    account_id, customer_id = await customer_for_new_account(pool, stripe_client)
    card = await attached_card(stripe_client, customer_id)
    intent = await sepa_set_up(stripe_client, customer_id)
    # The bank cancels the mandate before the backfill runs.
    async with aiohttp.ClientSession() as http:
        url = f"{stripe_fake}/_extras/mandates/{intent['mandate']}"
        async with http.post(url, data={"status": "inactive"}) as response:
            assert response.status == 200

    async with pool.acquire() as conn:
        counts = await backfill(conn, stripe_client, RateLimitedStripe(None))
    assert counts["payment_methods"] >= 2 and counts["mandates"] >= 1
    methods = await pool.fetch(
        "SELECT id, type, last4, mandate_reference FROM payment_methods WHERE account_id = $1 ORDER BY type",
        account_id,
    )
    assert [(row["id"], row["type"], row["last4"]) for row in methods] == [
        (card["id"], "card", "4242"),
        (intent["payment_method"], "sepa_debit", "3000"),
    ]
    mandate = await pool.fetchrow("SELECT status, reference FROM mandates WHERE id = $1", intent["mandate"])
    assert mandate["status"] == "inactive"
    assert methods[1]["mandate_reference"] == mandate["reference"]
