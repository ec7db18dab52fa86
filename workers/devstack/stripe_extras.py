"""What localstripe lacks of Stripe's API, served in front of it for the dev stack and tests.

localstripe has no mandates, SetupIntents without a `mandate`, and lists only card
payment methods; a succeeded SetupIntent there does not attach its payment method to
the customer. This server answers those parts the way Stripe documents them and
forwards every other request to localstripe unchanged:

- confirming a SetupIntent attaches its payment method to the intent's customer and,
  for SEPA Debit, creates a multi-use mandate named in the intent's `mandate`;
- `GET /v1/mandates/{id}`;
- `GET /v1/payment_methods?customer=…&type=sepa_debit` and `GET /v1/setup_intents?customer=…`.

`POST /_extras/mandates/{id}` with `status=…` changes a mandate, as a bank would.
Run: `python -m workers.devstack.stripe_extras --port P --upstream http://127.0.0.1:Q`.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from typing import Any

import aiohttp
from aiohttp import web

Obj = dict[str, Any]
UPSTREAM = web.AppKey("upstream", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)
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
    async with request.app[SESSION].request(method, url, data=body, headers=headers) as response:
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
    reference = secrets.token_hex(8).upper()
    return {
        "id": "mandate_" + secrets.token_hex(12),
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
    if method.get("type") == "sepa_debit":
        mandate = _mandate(method_id)
        request.app[STATE]["mandates"][mandate["id"]] = mandate
        request.app[STATE]["intent_mandates"][intent["id"]] = mandate["id"]
    return _json(200, _with_mandate(request.app, intent))


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
    return _json(200, found)


async def forward(request: web.Request) -> web.Response:
    status, payload = await _forward(request)
    return _json(status, payload)


def create_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    app[STATE] = {"mandates": {}, "intent_mandates": {}, "sepa_methods": []}

    async def session(app: web.Application) -> Any:
        app[SESSION] = aiohttp.ClientSession()
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session)
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
    args = parser.parse_args()
    web.run_app(create_app(args.upstream), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
