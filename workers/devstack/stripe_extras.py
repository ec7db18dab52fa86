"""What localstripe lacks of Stripe's API, served in front of it for the dev stack and tests.

localstripe has no mandates, SetupIntents without a `mandate`, and lists only card
payment methods; a succeeded SetupIntent there does not attach its payment method to
the customer. This server answers those parts the way Stripe documents them and
forwards every other request to localstripe unchanged:

- confirming a SetupIntent attaches its payment method to the intent's customer and,
  for SEPA Debit, creates a multi-use mandate named in the intent's `mandate`;
- `GET /v1/mandates/{id}`;
- `GET /v1/payment_methods?customer=…&type=sepa_debit` and `GET /v1/setup_intents?customer=…`;
- deleting a customer cancels its subscriptions first, as Stripe does, so that
  `customer.subscription.deleted` for each comes with `customer.deleted`.

Webhooks go out through `stripe_webhooks.Relay`, late, sometimes twice, out of order and
retried, as Stripe delivers them: localstripe's own events (it is told to send them
here) and those it never sends (`payment_method.attached` and `.detached`,
`setup_intent.succeeded`, `mandate.updated`).

`POST /_extras/mandates/{id}` with `status=…` changes a mandate, as a bank would.
Run: `python -m workers.devstack.stripe_extras --port P --upstream http://127.0.0.1:Q
[--webhook-url URL --webhook-secret S [--webhook-delay MIN:MAX] …]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import string
import time
from typing import Any

import aiohttp
from aiohttp import web

from workers.devstack.stripe_webhooks import (
    RELAY,
    Relay,
    WebhookConfig,
    add_relay_routes,
    new_event,
    register_relay,
    stripe_id,
)

Obj = dict[str, Any]
UPSTREAM = web.AppKey("upstream", str)
HTTP = web.AppKey("http", aiohttp.ClientSession)
STATE = web.AppKey("state", dict)
FORWARDED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Stripe-Version")


async def _forward(request: web.Request) -> tuple[int, Any]:
    """Send the request to localstripe as it came."""
    return await _call(request, request.method, request.path_qs, await request.read())


async def _call(request: web.Request, method: str, path_qs: str, body: bytes = b"") -> tuple[int, Any]:
    """One call to localstripe with the caller's credentials."""
    headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    url = request.app[UPSTREAM] + path_qs
    async with request.app[HTTP].request(method, url, data=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


def _json(status: int, payload: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(payload), content_type="application/json")


def _missing(kind: str, object_id: str) -> web.Response:
    error = {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "message": f"No such {kind}: '{object_id}'",
        "param": kind,
    }
    return _json(404, {"error": error})


def _with_mandate(app: web.Application, intent: Obj) -> Obj:
    return {**intent, "mandate": app[STATE]["intent_mandates"].get(intent.get("id"))}


def _mandate(payment_method_id: str) -> Obj:
    reference = stripe_id("", 16, string.ascii_uppercase + string.digits)
    return {
        "id": stripe_id("mandate_"),
        "object": "mandate",
        "customer_acceptance": {
            "accepted_at": int(time.time()),
            "type": "online",
            "online": {"ip_address": "203.0.113.9", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
        },
        "livemode": False,
        "multi_use": {},
        "payment_method": payment_method_id,
        "payment_method_details": {
            "type": "sepa_debit",
            "sepa_debit": {"reference": reference, "url": f"https://stripe.test/mandates/{reference}"},
        },
        "status": "active",
        "type": "multi_use",
    }


def _emit(request: web.Request, event_type: str, obj: Obj, previous: Obj | None = None) -> None:
    request.app[RELAY].send(new_event(event_type, obj, previous))


async def delete_customer(request: web.Request) -> web.Response:
    """Stripe cancels a deleted customer's subscriptions; localstripe does not."""
    customer = request.match_info["id"]
    status, page = await _call(request, "GET", f"/v1/subscriptions?customer={customer}&limit=100")
    if status == 200:
        for subscription in page.get("data", []):
            if subscription.get("status") != "canceled":
                await _call(request, "DELETE", f"/v1/subscriptions/{subscription['id']}")
    status, payload = await _forward(request)
    return _json(status, payload)


async def attach_payment_method(request: web.Request) -> web.Response:
    status, method = await _forward(request)
    if status == 200:
        _emit(request, "payment_method.attached", method)
    return _json(status, method)


async def detach_payment_method(request: web.Request) -> web.Response:
    method_id = request.match_info["id"]
    _, before = await _call(request, "GET", f"/v1/payment_methods/{method_id}")
    status, method = await _forward(request)
    if status == 200:
        _emit(request, "payment_method.detached", method, {"customer": before.get("customer")})
    return _json(status, method)


async def create_payment_method(request: web.Request) -> web.Response:
    status, method = await _forward(request)
    if status == 200 and method.get("type") == "sepa_debit":
        request.app[STATE]["sepa_methods"].append(method["id"])
    return _json(status, method)


async def list_payment_methods(request: web.Request) -> web.Response:
    if request.query.get("type") != "sepa_debit":
        status, page = await _forward(request)
        return _json(status, page)
    customer = request.query.get("customer")
    methods = []
    for method_id in request.app[STATE]["sepa_methods"]:
        status, method = await _call(request, "GET", f"/v1/payment_methods/{method_id}")
        if status == 200 and method.get("customer") == customer:
            methods.append(method)
    return _json(200, {"object": "list", "url": "/v1/payment_methods", "has_more": False, "data": methods})


async def confirm_setup_intent(request: web.Request) -> web.Response:
    status, intent = await _forward(request)
    if status != 200 or intent.get("status") != "succeeded":
        return _json(status, intent)
    method_id, customer = intent["payment_method"], intent.get("customer")
    if customer:  # Stripe attaches the method it saved to the intent's customer
        attach = f"/v1/payment_methods/{method_id}/attach"
        await _call(request, "POST", attach, f"customer={customer}".encode())
    _, method = await _call(request, "GET", f"/v1/payment_methods/{method_id}")
    if customer:
        _emit(request, "payment_method.attached", method)
    if method.get("type") == "sepa_debit":
        mandate = _mandate(method_id)
        request.app[STATE]["mandates"][mandate["id"]] = mandate
        request.app[STATE]["intent_mandates"][intent["id"]] = mandate["id"]
    confirmed = _with_mandate(request.app, intent)
    _emit(request, "setup_intent.succeeded", confirmed)
    return _json(200, confirmed)


async def setup_intent(request: web.Request) -> web.Response:
    status, intent = await _forward(request)
    return _json(status, _with_mandate(request.app, intent) if status == 200 else intent)


async def list_setup_intents(request: web.Request) -> web.Response:
    customer = request.query.get("customer")
    query = "&".join(f"{key}={value}" for key, value in request.query.items() if key != "customer")
    status, page = await _call(request, "GET", "/v1/setup_intents?" + query)
    if status == 200:
        page["data"] = [
            _with_mandate(request.app, intent)
            for intent in page["data"]
            if customer is None or intent.get("customer") == customer
        ]
    return _json(status, page)


async def mandate(request: web.Request) -> web.Response:
    mandate_id = request.match_info["id"]
    found = request.app[STATE]["mandates"].get(mandate_id)
    return _json(200, found) if found else _missing("mandate", mandate_id)


async def change_mandate(request: web.Request) -> web.Response:
    mandate_id = request.match_info["id"]
    found = request.app[STATE]["mandates"].get(mandate_id)
    if found is None:
        return _missing("mandate", mandate_id)
    found["status"] = (await request.post())["status"]
    _emit(request, "mandate.updated", found)
    return _json(200, found)


async def forward(request: web.Request) -> web.Response:
    status, payload = await _forward(request)
    return _json(status, payload)


def create_app(
    upstream: str, port: int | None = None, webhooks: WebhookConfig | None = None
) -> web.Application:
    """The server in front of localstripe; with `port` (its own), localstripe is told to
    send its webhooks here to be relayed."""
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    app[STATE] = {"mandates": {}, "intent_mandates": {}, "sepa_methods": []}
    app[RELAY] = Relay()
    if webhooks is not None:
        app[RELAY].configure(webhooks)

    async def open_http(app: web.Application) -> Any:
        app[HTTP] = aiohttp.ClientSession()
        # localstripe may start after us (the dev stack starts both at once).
        registering = (
            asyncio.create_task(register_relay(app[HTTP], app[UPSTREAM], port)) if port is not None else None
        )
        yield
        if registering is not None:
            registering.cancel()
        await app[RELAY].close()
        await app[HTTP].close()

    app.cleanup_ctx.append(open_http)
    add_relay_routes(app)
    app.router.add_delete("/v1/customers/{id}", delete_customer)
    app.router.add_post("/v1/payment_methods/{id}/attach", attach_payment_method)
    app.router.add_post("/v1/payment_methods/{id}/detach", detach_payment_method)
    app.router.add_post("/v1/payment_methods", create_payment_method)
    app.router.add_get("/v1/payment_methods", list_payment_methods)
    app.router.add_post("/v1/setup_intents/{id}/confirm", confirm_setup_intent)
    app.router.add_get("/v1/setup_intents/{id}", setup_intent)
    app.router.add_post("/v1/setup_intents", setup_intent)
    app.router.add_get("/v1/setup_intents", list_setup_intents)
    app.router.add_get("/v1/mandates/{id}", mandate)
    app.router.add_post("/_extras/mandates/{id}", change_mandate)
    app.router.add_route("*", "/{path:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="localstripe's base URL")
    parser.add_argument("--webhook-url", help="where to deliver webhooks (bindery web's /webhooks/stripe)")
    parser.add_argument("--webhook-secret", help="the endpoint's signing secret")
    parser.add_argument("--webhook-delay", default="0:0", metavar="MIN:MAX", help="seconds before delivery")
    parser.add_argument("--webhook-duplicates", type=float, default=0.0, help="share delivered twice")
    parser.add_argument("--webhook-retry-for", type=float, default=60.0, help="seconds of retries")
    args = parser.parse_args()
    webhooks = None
    if args.webhook_url:
        low, _, high = args.webhook_delay.partition(":")
        webhooks = WebhookConfig.from_json(
            {
                "url": args.webhook_url,
                "secret": args.webhook_secret,
                "delay_min": low,
                "delay_max": high or low,
                "duplicates": args.webhook_duplicates,
                "retry_for": args.webhook_retry_for,
            }
        )
    app = create_app(args.upstream, args.port, webhooks)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
