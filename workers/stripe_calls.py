"""Every Stripe call goes through here: under the shared rate limit, and when Stripe
answers 429 anyway, again after its Retry-After (stripe-python does not retry 429s)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import stripe

from workers.rate_limit import RateLimiter

T = TypeVar("T")
MAX_RATE_LIMITED = 5
MAX_RETRY_AFTER_SECONDS = 60.0


def retry_after(error: stripe.RateLimitError) -> float:
    headers = error.headers or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return min(MAX_RETRY_AFTER_SECONDS, max(0.0, float(value))) if value is not None else 1.0
    except ValueError:
        return 1.0


class RateLimitedStripe:
    """Parameters:
    limiter: the shared token bucket, or None (one-off CLI calls).
    """

    def __init__(self, limiter: RateLimiter | None) -> None:
        self.limiter = limiter

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        for attempt in range(MAX_RATE_LIMITED + 1):
            if self.limiter is not None:
                await self.limiter.take()
            try:
                return await fn(*args, **kwargs)
            except stripe.RateLimitError as error:
                if attempt == MAX_RATE_LIMITED:
                    raise
                await asyncio.sleep(retry_after(error))
        raise AssertionError("unreachable")
