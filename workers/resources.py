"""What an actor may use, opened once per worker process: the asyncpg pool and settings.

Domain issues add their clients (Stripe, S3, SMTP) here, so that every actor gets
them the same way and they are closed at shutdown.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import dramatiq
import redis.asyncio
import stripe
from dramatiq.asyncio import get_event_loop_thread
from stripe import AIOHTTPClient

from workers.audit_log import AuditLog
from workers.db import create_pool
from workers.gc_pauses import freeze_startup_objects
from workers.job_rows import JobRows
from workers.rate_limit import RateLimiter
from workers.s3 import s3_client
from workers.settings import Settings
from workers.smtp_pool import SmtpPool
from workers.stripe_client import make_stripe_client


@dataclass
class Resources:
    settings: Settings
    pool: asyncpg.Pool
    stripe: stripe.StripeClient | None = None
    stripe_http: AIOHTTPClient | None = None
    # Shared across processes; None only without a Redis for it (see RATE_LIMIT_REDIS_URL).
    stripe_limiter: RateLimiter | None = None
    redis: redis.asyncio.Redis | None = None
    # One S3 client per process: creating one costs more than a batch of deletions.
    s3: Any = None
    # Persistent SMTP connections for mass mail, and the provider's rate shared by all.
    smtp: SmtpPool | None = None
    mail_limiter: RateLimiter | None = None
    closing: AsyncExitStack | None = None
    # Claims and "done" marks of the jobs this process runs, written in batches.
    job_rows: JobRows = field(init=False)
    # Audit records written on their own (not inside a transaction), in batches.
    audit: AuditLog = field(init=False)

    def __post_init__(self) -> None:
        self.job_rows = JobRows(self.pool)
        self.audit = AuditLog(self.pool)


_current: Resources | None = None


def current_resources() -> Resources:
    """The worker process's resources; only actors call this, and pass what they need on."""
    if _current is None:
        raise RuntimeError("worker resources are not open (is the Resources middleware installed?)")
    return _current


async def open_resources(settings: Settings, *, pool_size: int) -> Resources:
    pool = await create_pool(settings.database_url, max_size=pool_size, application_name="bindery-worker")
    client, http = make_stripe_client(settings)
    closing = AsyncExitStack()
    s3 = await closing.enter_async_context(s3_client(settings))
    resources = Resources(
        settings=settings,
        pool=pool,
        stripe=client,
        stripe_http=http,
        s3=s3,
        closing=closing,
        smtp=SmtpPool(settings, settings.smtp_connections),  # connects when first used
    )
    if settings.limiter_redis_url:
        resources.redis = redis.asyncio.Redis.from_url(settings.limiter_redis_url)
        resources.stripe_limiter = RateLimiter(
            resources.redis,
            "stripe",
            rate=settings.stripe_requests_per_second,
            burst=max(1, int(settings.stripe_requests_per_second)),
        )
        resources.mail_limiter = RateLimiter(
            resources.redis,
            "smtp",
            rate=settings.breach_messages_per_second,
            burst=max(1, int(settings.breach_messages_per_second)),
        )
    return resources


async def close_resources(resources: Resources) -> None:
    await resources.pool.close()
    if resources.smtp is not None:
        await resources.smtp.close()
    if resources.closing is not None:
        await resources.closing.aclose()
    if resources.redis is not None:
        await resources.redis.aclose()
    if resources.stripe_http is not None:
        await resources.stripe_http.close_async()  # type: ignore[no-untyped-call]


class ResourcesMiddleware(dramatiq.Middleware):
    """Opens `Resources` on the worker's event loop before boot and closes them at shutdown.

    Before, not after: dramatiq starts consuming before it calls `after_worker_boot`, so a
    message already waiting would reach an actor with nothing open.

    Closed after, not before, the worker shuts down: Dramatiq lets each worker thread
    finish the message it holds (a deploy's SIGTERM is not a crash), and those jobs
    still need the pool to record their outcome. Closed before, they failed with "pool
    is closing" and were retried, some after running once already.

    The pool is no larger than the worker's thread count: each thread runs one actor
    at a time, so more connections would sit idle on the database.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        global _current
        loop_thread = get_event_loop_thread()  # started by AsyncIO's own before_worker_boot
        assert loop_thread is not None, "the AsyncIO middleware must come first"
        _current = loop_thread.run_coroutine(
            open_resources(self.settings, pool_size=max(1, worker.worker_threads))
        )
        freeze_startup_objects()  # the process's imports and resources live as long as it does

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        # Runs before AsyncIO's own, which stops the event loop: after hooks go in reverse.
        global _current
        loop_thread = get_event_loop_thread()
        if _current is not None and loop_thread is not None:
            loop_thread.run_coroutine(close_resources(_current))
        _current = None
