"""What the web process holds open while it runs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import dramatiq
from aiohttp import web

from workers.batching import Batcher, PooledBatcher
from workers.enqueue import AsyncRedisEnqueuer
from workers.job_requests import Accepted, IdempotencyConflict, Submission
from workers.settings import Settings
from workers.tokens import TokenVerifier


@dataclass
class WebState:
    settings: Settings
    pool: asyncpg.Pool
    broker: dramatiq.Broker
    verifier: TokenVerifier
    submissions: PooledBatcher[Submission, Accepted | IdempotencyConflict]
    # Broker clients block; they run here, off the event loop.
    executor: ThreadPoolExecutor
    # Redis broker: messages go out on the event loop; others use the executor.
    enqueuer: AsyncRedisEnqueuer | None = None
    # Messages waiting to go to the broker once their rows are committed
    # (workers/web/after_commit.py).
    outbox: Batcher[dramatiq.Message[Any], None] = field(init=False)


STATE = web.AppKey("state", WebState)
