"""Ask Stripe for an object's current state when an event alone cannot say what it is.

Stripe's `created` has one-second resolution: two events of one object in the same
second cannot be ordered from their payloads. With `STRIPE_REFETCH=when-needed` (the
default) such a tie is settled by fetching the object as it is now, which is at least
as new as either event; `always` fetches for every event (one API call each, under the
shared rate limit); `never` applies ties in arrival order. Deletions are never
re-fetched: a deleted object has nothing newer to say.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

import stripe

from workers.stripe_calls import RateLimitedStripe

Mode = Literal["always", "when-needed", "never"]
Obj = dict[str, Any]


class Refetcher:
    """Parameters:
    client: the Stripe client.
    gate: the shared rate limit every call goes through.
    mode: STRIPE_REFETCH.
    """

    def __init__(self, client: stripe.StripeClient, gate: RateLimitedStripe, mode: Mode) -> None:
        self.client = client
        self.gate = gate
        self.mode = mode

    def wanted(self, event_type: str, *, tie: bool) -> bool:
        if self.mode == "never" or event_type.endswith(".deleted"):
            return False
        return self.mode == "always" or tie

    def _retrieve(self, kind: str) -> Callable[..., Awaitable[Any]] | None:
        v1 = self.client.v1
        return {
            "customer": v1.customers.retrieve_async,
            "subscription": v1.subscriptions.retrieve_async,
            "payment_method": v1.payment_methods.retrieve_async,
            "mandate": v1.mandates.retrieve_async,
            "invoice": v1.invoices.retrieve_async,
            "setup_intent": v1.setup_intents.retrieve_async,
        }.get(kind)

    async def fetch(self, kind: str, object_id: str) -> Obj | None:
        """The object as Stripe has it now; None when Stripe no longer has it."""
        retrieve = self._retrieve(kind)
        if retrieve is None:
            return None
        try:
            fetched = await self.gate.call(retrieve, object_id)
        except stripe.InvalidRequestError as error:
            if error.http_status == 404:
                return None
            raise
        result: Obj = fetched.to_dict()
        return result

    async def current(self, obj: Obj) -> Obj:
        """`obj` as it is now; `obj` itself when Stripe cannot tell us more."""
        kind = obj.get("object")
        fetched = await self.fetch(kind, obj["id"]) if isinstance(kind, str) else None
        return fetched if fetched is not None else obj
