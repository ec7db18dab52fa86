"""A Stripe fake of a test's own (localstripe behind stripe_extras) that delivers its
webhooks to a given endpoint the way Stripe does: late, some twice, out of order, retried
(workers/devstack/stripe_webhooks.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import stripe
from stripe._http_client import AIOHTTPClient

from tests.http import call
from workers.devstack import commands
from workers.devstack.servers import free_port, running

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}
IBAN = "DE89370400440532013000"


@contextmanager
def delivering_stripe(logs: Path, *webhook_options: str) -> Iterator[str]:
    """The fake's base URL; `webhook_options` as `commands.stripe_webhooks` makes them."""
    upstream, port = free_port(), free_port()
    with (
        running("localstripe", commands.localstripe(upstream), upstream, logs / "localstripe.log"),
        running(
            "stripe_extras",
            commands.stripe_extras(port, upstream, *webhook_options),
            port,
            logs / "stripe_extras.log",
        ),
    ):
        yield f"http://127.0.0.1:{port}"


def deliveries(base: str) -> dict[str, Any]:
    """What the fake has sent, delivered, retried and given up, and what is still pending."""
    status, _, body = call("GET", f"{base}/_extras/webhooks")
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def client_for(base: str) -> tuple[stripe.StripeClient, AIOHTTPClient]:
    """A Stripe client on the fake, as the customer area (or Stripe.js) would use it."""
    http = AIOHTTPClient()
    client = stripe.StripeClient("sk_test_customer_area", base_addresses={"api": base}, http_client=http)
    return client, http


async def monthly_plan(client: stripe.StripeClient) -> str:
    product = await client.v1.products.create_async(params={"name": "Pro"})
    plan = await client.v1.plans.create_async(
        params={"product": product.id, "currency": "eur", "amount": 1900, "interval": "month"}
    )
    return str(plan.id)


async def subscribe_by_card(
    client: stripe.StripeClient, customer_id: str, plan: str | None = None
) -> tuple[str, str]:
    """A card attached and made the default, and a monthly subscription (to `plan`, else a
    new one); (card id, subscription id)."""
    card = await client.v1.payment_methods.create_async(params={"type": "card", "card": CARD})
    await client.v1.payment_methods.attach_async(card.id, params={"customer": customer_id})
    await client.v1.customers.update_async(
        customer_id, params={"invoice_settings": {"default_payment_method": card.id}}
    )
    subscription = await client.v1.subscriptions.create_async(
        params={"customer": customer_id, "items": [{"plan": plan or await monthly_plan(client)}]}
    )
    return card.id, subscription.id


async def sepa_set_up(client: stripe.StripeClient, customer_id: str) -> dict[str, Any]:
    """A SEPA Debit method saved through a SetupIntent, as Checkout would; the intent."""
    method = await client.v1.payment_methods.create_async(
        params={"type": "sepa_debit", "sepa_debit": {"iban": IBAN}}
    )
    intent = await client.v1.setup_intents.create_async(
        params={"customer": customer_id, "payment_method_types": ["sepa_debit"]}
    )
    confirmed = await client.v1.setup_intents.confirm_async(intent.id, params={"payment_method": method.id})
    assert confirmed.status == "succeeded" and confirmed.mandate
    result: dict[str, Any] = confirmed.to_dict()
    return result
