"""Breach mail actors: thin wrappers over tasks.breach.lanes and campaigns."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import dramatiq

import workers.broker  # noqa: F401  (Dramatiq's global broker must exist before actors are declared)
from tasks.breach.campaigns import scrub_finished
from tasks.breach.lanes import CampaignSender, send_batch
from tasks.breach.recipient_rows import recover
from workers.enqueue import enqueue_many
from workers.logs import get_logger
from workers.queues import policy
from workers.resources import current_resources

log = get_logger(__name__)
QUIET = timedelta(minutes=2)  # a sending campaign with no claim for this long gets its lanes back
# A lane goes from batch to batch in one message for this long, then sends itself again:
# a message per batch waited on the broker's idle polling (up to a second) between batches.
LANE_SECONDS = 60.0


@dramatiq.actor(actor_name="breach.send", queue_name="mail", **policy("mail").actor_options())
async def send(campaign_id: int) -> None:
    """Batches of the campaign for up to LANE_SECONDS; then this lane goes on in a new
    message (or waits for the next retry). Safe to repeat: rows are claimed, never assumed."""
    resources = current_resources()
    if resources.mail_limiter is None:
        # Without Redis no rate is shared: refuse rather than overrun the provider.
        raise RuntimeError("breach mail needs a Redis for its rate limit: set RATE_LIMIT_REDIS_URL")
    assert resources.smtp is not None
    lane = CampaignSender(resources.pool, resources.settings, resources.smtp, resources.mail_limiter)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LANE_SECONDS
    while True:
        outcome = await send_batch(lane, campaign_id)
        if outcome["claimed"]:
            counts = {key: value for key, value in outcome.items() if key != "wait"}
            log.info("breach batch", campaign_id=campaign_id, **counts)
        if not outcome["more"] or loop.time() > deadline:
            break
    if outcome["more"]:
        await asyncio.to_thread(send.send, campaign_id)
    elif outcome["wait"] is not None:
        delay = int(float(outcome["wait"]) * 1000)
        await asyncio.to_thread(send.send_with_options, args=(campaign_id,), delay=delay)


def start_lanes(campaign_id: int, lanes: int) -> None:
    """Send `lanes` messages that each work through the campaign (blocking: a broker call)."""
    enqueue_many(send.broker, [send.message(campaign_id) for _ in range(lanes)])


@dramatiq.actor(actor_name="breach.recover_lanes", **policy("default").actor_options())
async def recover_lanes() -> None:
    """Return rows a dead worker left `sending`; restart the lanes of quiet campaigns;
    finish those with nothing left. Idempotent."""
    resources = current_resources()
    outcome = await recover(resources.pool, QUIET)
    for campaign_id in outcome["restart"]:
        await asyncio.to_thread(start_lanes, campaign_id, resources.settings.breach_lanes)
    if outcome["restart"] or outcome["finished"] or outcome["returned"]:
        log.info("breach lanes recovered", **outcome)


@dramatiq.actor(actor_name="breach.scrub", **policy("default").actor_options())
async def scrub() -> None:
    """Delete the addresses of campaigns ended BREACH_RECIPIENT_RETENTION ago. Idempotent."""
    resources = current_resources()
    count = await scrub_finished(resources.pool, resources.settings.breach_recipient_retention)
    log.info("breach recipients scrubbed", campaigns=count)
