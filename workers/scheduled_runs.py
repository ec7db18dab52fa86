"""Worker side of the scheduler: a scheduled run starts once, and its lag is measured.

A message sent by the scheduler carries its (job, slot) in the `bindery_slot` option.
Before the actor runs, its `schedule_runs` row gets `started_at`; a second message for
the same slot (a scheduler that died between sending and recording the send, then
the sweeper) finds the run started and is skipped. A retry of the same message, or a
run whose worker died past the queue's time limit, may start again.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.broker import MessageProxy
from dramatiq.middleware import SkipMessage
from prometheus_client import Histogram

from workers.leases import lease_for
from workers.logs import get_logger
from workers.resources import current_resources

log = get_logger(__name__)
SLOT_OPTION = "bindery_slot"

LAG = Histogram(
    "bindery_scheduler_lag_seconds",
    "Actor start minus the scheduled slot.",
    ["job"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


async def start_run(
    pool: asyncpg.Pool, job: str, slot: datetime, *, retry: bool, lease_seconds: float
) -> datetime | None:
    """Record the start; None when the run already started (and this is not a retry)."""
    started: datetime | None = await pool.fetchval(
        """
        UPDATE schedule_runs SET started_at = now()
         WHERE job = $1 AND slot = $2
           AND (started_at IS NULL OR $3 OR started_at < now() - make_interval(secs => $4))
        RETURNING started_at
        """,
        job,
        slot,
        retry,
        lease_seconds,
    )
    return started


class ScheduledRunMiddleware(dramatiq.Middleware):
    """Marks scheduled runs started, skips duplicates, observes the firing lag."""

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        marker = message.options.get(SLOT_OPTION)
        if not marker:
            return
        job, slot_text = marker
        slot = datetime.fromisoformat(slot_text)
        loop_thread = get_event_loop_thread()
        assert loop_thread is not None
        lease = lease_for(broker.get_actor(message.actor_name).queue_name).total_seconds()
        started = loop_thread.run_coroutine(
            start_run(
                current_resources().pool,
                job,
                slot,
                retry=message.options.get("retries", 0) > 0,
                lease_seconds=lease,
            )
        )
        if started is None:
            log.info("scheduled run already started; skipping", job=job, slot=slot_text)
            raise SkipMessage()
        LAG.labels(job=job).observe(max(0.0, (started - slot).total_seconds()))
