"""A token bucket in Redis, shared by every process that talks to the same API.

Stripe allows about 100 requests a second in live mode (25 in test mode); each
process asking on its own would overshoot as soon as a few workers run. One Lua
script takes a token atomically, or says how long to wait for the next one.
"""

from __future__ import annotations

import asyncio

import redis.asyncio

# KEYS[1] bucket; ARGV: rate per second, burst, tokens wanted (at most burst). Returns the
# wait in milliseconds: 0 when the tokens were taken. Redis's own clock: callers' clocks
# disagree, and a caller whose "now" lags would make the bucket refill the same interval twice.
_TAKE = """
local rate, burst, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= wanted then tokens = tokens - wanted else wait = math.ceil((wanted - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
"""


class RateLimiter:
    """`await limiter.take()` returns once a token is granted to this caller.

    Parameters:
      client: an asyncio Redis client.
      name: the bucket (one per API and account, e.g. "stripe").
      rate: tokens added per second.
      burst: the most tokens the bucket holds.
    """

    def __init__(self, client: redis.asyncio.Redis, name: str, *, rate: float, burst: int) -> None:
        self._script = client.register_script(_TAKE)
        self._key = f"bindery:rate:{name}"
        self._rate, self._burst = rate, burst

    @property
    def burst(self) -> int:
        return self._burst

    async def take(self, count: int = 1) -> None:
        """`count` tokens at once (at most the burst): one round trip for several calls."""
        count = max(1, min(count, self._burst))
        while True:
            wait_ms = int(await self._script(keys=[self._key], args=[self._rate, self._burst, count]))
            if wait_ms == 0:
                return
            await asyncio.sleep(wait_ms / 1000)
