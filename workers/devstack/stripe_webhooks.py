"""Webhook delivery of the Stripe fake, as unkind as Stripe's own.

Stripe does not deliver an event once, at once and in order: it delivers late, may
deliver the same event twice, makes no promise of order, and retries a delivery that
did not get a 2xx for up to three days. This relay does the same to the events of the
fake (localstripe's own, and those `stripe_extras` adds where localstripe sends none):

- each event is delivered after a random delay between `delay_min` and `delay_max`
  seconds, which also reorders events sent close together;
- with probability `duplicates`, it is delivered a second time, after its own delay;
- a delivery answered with anything but a 2xx (or not answered) is tried again with
  backoff, for `retry_for` seconds from its first try, then given up;
- each try is signed as Stripe signs: `Stripe-Signature: t=<now>,v1=<HMAC-SHA256 of
  "t.body" with the endpoint's secret>`, the time being that of the try.

Configured with `POST /_extras/webhooks` (JSON: url, secret, delay_min, delay_max,
duplicates, retry_for, seed) or the `--webhook-*` options; `GET /_extras/webhooks`
says how many deliveries are pending, delivered, retried and given up, so that a test
can wait until everything sent has arrived.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

Obj = dict[str, Any]


@dataclass
class WebhookConfig:
    url: str
    secret: str
    delay_min: float = 0.0
    delay_max: float = 0.0
    duplicates: float = 0.0
    retry_for: float = 60.0
    seed: int | None = None

    @classmethod
    def from_json(cls, data: Obj) -> WebhookConfig:
        config = cls(
            url=str(data["url"]),
            secret=str(data["secret"]),
            delay_min=float(data.get("delay_min", 0.0)),
            delay_max=float(data.get("delay_max") or data.get("delay_min") or 0.0),
            duplicates=float(data.get("duplicates", 0.0)),
            retry_for=float(data.get("retry_for", 60.0)),
            seed=int(data["seed"]) if data.get("seed") is not None else None,
        )
        if not 0 <= config.delay_min <= config.delay_max or not 0 <= config.duplicates <= 1:
            raise ValueError("need 0 <= delay_min <= delay_max and 0 <= duplicates <= 1")
        return config


_BASE62 = string.digits + string.ascii_letters


def stripe_id(prefix: str, length: int = 24, alphabet: str = _BASE62) -> str:
    """An id shaped like Stripe's: letters and digits after the prefix. Not hex: 24 hex
    characters hold 13 digits in a row often enough to be masked as a card number."""
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def new_event(event_type: str, obj: Obj, previous: Obj | None = None) -> Obj:
    """An event object as Stripe writes one."""
    data: Obj = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {
        "id": stripe_id("evt_"),
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": data,
    }


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass
class Relay:
    """The deliveries of one endpoint (a newer configuration replaces the older)."""

    config: WebhookConfig | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"sent": 0, "delivered": 0, "retried": 0, "given_up": 0, "duplicated": 0}
    )
    pending: int = 0
    _rng: random.Random = field(default_factory=random.Random)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _http: aiohttp.ClientSession | None = None

    def configure(self, config: WebhookConfig) -> None:
        self.config = config
        # Chaos for tests, not secrets: a seeded generator replays a run.
        self._rng = random.Random(config.seed)  # noqa: S311  # nosec B311

    def status(self) -> Obj:
        return {"configured": self.config is not None, "pending": self.pending, **self.counts}

    def send(self, event: Obj) -> None:
        """Deliver the event (and perhaps a duplicate), each after its own delay."""
        if self.config is None:
            return
        self.counts["sent"] += 1
        copies = 2 if self._rng.random() < self.config.duplicates else 1
        self.counts["duplicated"] += copies - 1
        body = json.dumps(event).encode()
        for _ in range(copies):
            delay = self._rng.uniform(self.config.delay_min, self.config.delay_max)
            self.pending += 1
            task = asyncio.get_running_loop().create_task(self._deliver(self.config, body, delay))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, config: WebhookConfig, body: bytes, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            first_try, backoff = time.monotonic(), 0.2
            while True:
                if await self._try(config, body):
                    self.counts["delivered"] += 1
                    return
                if time.monotonic() - first_try + backoff > config.retry_for:
                    self.counts["given_up"] += 1
                    return
                self.counts["retried"] += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        finally:
            self.pending -= 1

    async def _try(self, config: WebhookConfig, body: bytes) -> bool:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature(config.secret, body, int(time.time())),
        }
        try:
            async with self._http.post(config.url, data=body, headers=headers) as response:
                return 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.close()


# The relay inside the Stripe fake's server (workers/devstack/stripe_extras.py).
RELAY = web.AppKey("relay", Relay)
# What localstripe signs its webhooks to us with: they never leave this machine.
INTERNAL_SECRET = "whsec_localstripe_to_extras"  # noqa: S105  # nosec B105


async def relay(request: web.Request) -> web.Response:
    """localstripe's own webhooks, passed on as Stripe would deliver them."""
    request.app[RELAY].send(await request.json())
    return web.Response()


async def webhooks_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[RELAY].status())


async def configure_webhooks(request: web.Request) -> web.Response:
    try:
        config = WebhookConfig.from_json(await request.json())
    except (KeyError, TypeError, ValueError) as error:
        return web.json_response(
            {"error": {"type": "invalid_request_error", "message": str(error)}}, status=400
        )
    request.app[RELAY].configure(config)
    return web.json_response(request.app[RELAY].status())


def add_relay_routes(app: web.Application) -> None:
    app.router.add_post("/_relay", relay)
    app.router.add_get("/_extras/webhooks", webhooks_status)
    app.router.add_post("/_extras/webhooks", configure_webhooks)


REGISTER_FOR_SECONDS = 60.0


async def register_relay(http: aiohttp.ClientSession, upstream: str, port: int) -> None:
    """Tell localstripe to send its webhooks to our `/_relay`, once it answers."""
    config = {"url": f"http://127.0.0.1:{port}/_relay", "secret": INTERNAL_SECRET}
    deadline = time.monotonic() + REGISTER_FOR_SECONDS
    while True:
        try:
            async with http.post(upstream + "/_config/webhooks/relay", json=config) as answer:
                answer.raise_for_status()
                return
        except aiohttp.ClientError:
            if time.monotonic() > deadline:
                print("stripe_extras: localstripe never answered; its webhooks are not relayed", flush=True)
                return
            await asyncio.sleep(0.2)
