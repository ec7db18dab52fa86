"""The test suite's Stripe delivers webhooks the way Stripe does: signed at each try, late,
some twice, retried while the endpoint fails, given up after a while; deleting a customer
sends `customer.subscription.deleted` for each subscription and `customer.deleted`; a
detached payment method's event names its former customer only in previous_attributes."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tasks.billing.signature import verify_signature
from tests.http import call
from tests.processes import eventually
from tests.stripe_fake import client_for, deliveries, delivering_stripe, subscribe_by_card
from workers.devstack.servers import free_port

SECRET = "whsec_fake_under_test"


class Endpoint:
    """A webhook endpoint that answers 500 to the first `failures` tries of each event."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.tries: Counter[str] = Counter()
        self.delivered: list[dict[str, Any]] = []
        self.bad_signatures = 0

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify_signature(body, request.headers.get("Stripe-Signature"), [SECRET], time.time())
        except Exception:
            self.bad_signatures += 1
            return web.Response(status=400)
        event = json.loads(body)
        self.tries[event["id"]] += 1
        if self.tries[event["id"]] <= self.failures:
            return web.Response(status=500)
        self.delivered.append(event)
        return web.Response()

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [event for event in self.delivered if event["type"] == event_type]


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[Endpoint, str]]:
    receiver = Endpoint(failures=2)
    app = web.Application()
    app.router.add_post("/hook", receiver.receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield receiver, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


async def test_webhooks_come_late_twice_retried_and_signed(
    endpoint: tuple[Endpoint, str], tmp_path: Path
) -> None:
    receiver, url = endpoint
    options = ("--webhook-url", url, "--webhook-secret", SECRET, "--webhook-delay", "0.1:1.5")
    with delivering_stripe(tmp_path, *options, "--webhook-duplicates", "1") as base:
        client, http = client_for(base)
        try:
            customer = await client.v1.customers.create_async(params={"email": "fake@example.org"})
            card, subscription = await subscribe_by_card(client, customer.id)
            await client.v1.payment_methods.detach_async(card)
            await client.v1.customers.delete_async(customer.id)

            def all_in() -> bool:
                return bool(receiver.of_type("customer.deleted")) and deliveries(base)["pending"] == 0

            await eventually(all_in, 30, "every delivery")
        finally:
            await http.close_async()
        sent = deliveries(base)
    assert receiver.bad_signatures == 0
    # Every event delivered twice, once its first two tries were refused and retried.
    assert sent["duplicated"] == sent["sent"] and sent["delivered"] == 2 * sent["sent"]
    assert set(Counter(event["id"] for event in receiver.delivered).values()) == {2}
    assert set(receiver.tries.values()) == {4} and sent["retried"] == 2 * sent["sent"]
    [deleted, _] = receiver.of_type("customer.subscription.deleted")
    assert deleted["data"]["object"]["id"] == subscription
    assert deleted["data"]["object"]["status"] == "canceled"
    [detached, _] = receiver.of_type("payment_method.detached")
    assert detached["data"]["object"]["customer"] is None
    assert detached["data"]["previous_attributes"] == {"customer": customer.id}
    assert len(receiver.of_type("payment_method.attached")) == 2


async def test_an_endpoint_that_keeps_failing_is_given_up_after_the_retry_window(
    tmp_path: Path,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    with delivering_stripe(tmp_path, "--webhook-url", dead, "--webhook-secret", SECRET) as base:
        status, _, answer = call(
            "POST", f"{base}/_extras/webhooks", body={"url": dead, "secret": SECRET, "retry_for": 1.0}
        )
        assert status == 200, answer
        client, http = client_for(base)
        try:
            await client.v1.customers.create_async(params={"email": "nobody@example.org"})
        finally:
            await http.close_async()
        await eventually(lambda: deliveries(base)["given_up"] >= 1, 30, "the delivery given up")
        assert deliveries(base)["delivered"] == 0 and deliveries(base)["retried"] >= 2
        bad = call("POST", f"{base}/_extras/webhooks", body={"url": dead, "secret": SECRET, "duplicates": 2})
        assert bad[0] == 400 and "duplicates" in bad[2]["error"]["message"]
