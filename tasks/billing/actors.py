"""Billing actors: thin wrappers over tasks.billing.processing and tasks.billing.customers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import dramatiq

from tasks.billing.catch_up import catch_up_events
from tasks.billing.customers import push_account
from tasks.billing.processing import process_events, stale_events
from tasks.billing.refetch import Refetcher
from workers.enqueue import enqueue_many, new_messages
from workers.jobs import JobArguments, RowId, job, row_must_exist
from workers.logs import get_logger
from workers.queues import policy
from workers.resources import Resources, current_resources
from workers.shared_messages import shared_calls
from workers.stripe_calls import RateLimitedStripe

log = get_logger(__name__)


@dramatiq.actor(actor_name="billing.process_event", queue_name="billing", **policy("billing").actor_options())
async def process_event(*event_ids: str) -> None:
    """Apply inbox events, several in one transaction when a message holds several
    (tasks/billing/processing.py). Idempotent: a processed event is not claimed again, and
    an older event than the object's newest changes nothing."""
    resources = current_resources()
    states = await process_events(resources.pool, list(event_ids), refetch=refetcher(resources))
    # Each outcome is in the inbox (`bindery stripe events`); a final failure is logged there.
    log.debug("stripe events processed", count=len(states))


def refetcher(resources: Resources) -> Refetcher | None:
    if resources.stripe is None:
        return None
    gate = RateLimitedStripe(resources.stripe_limiter)
    return Refetcher(resources.stripe, gate, resources.settings.stripe_refetch)


def event_messages(event_ids: list[str]) -> list[dramatiq.Message[object]]:
    """Processing messages for stored events; events stored together share them."""
    return new_messages(shared_calls(process_event, event_ids))


async def send_events(event_ids: list[str]) -> None:
    """The stored events' processing messages, sent off the event loop."""
    if event_ids:
        await asyncio.to_thread(enqueue_many, process_event.broker, event_messages(event_ids))


@dramatiq.actor(actor_name="billing.resend_stale_events", **policy("default").actor_options())
async def resend_stale_events() -> None:
    """Re-send inbox events whose message was lost or whose worker died. Safe to repeat:
    processing claims an event only while it is unclaimed or its lease has ended."""
    event_ids = await stale_events(current_resources().pool, timedelta(minutes=1))
    if event_ids:
        await send_events(event_ids)
        log.info("re-sent stripe events", count=len(event_ids))


class PushAccount(JobArguments):
    account_id: RowId


async def push_account_job(resources: Resources, arguments: PushAccount) -> dict[str, Any]:
    """Create or update the account's Stripe customer. Idempotent: an update sets the same
    fields again; a create is keyed per account."""
    assert resources.stripe is not None
    async with resources.pool.acquire() as conn:
        return await push_account(
            conn, resources.stripe, arguments.account_id, RateLimitedStripe(resources.stripe_limiter)
        )


job(
    "billing.push_account",
    scope="billing",
    arguments=PushAccount,
    queue="billing",
    precheck=row_must_exist("accounts", "account_id"),
)(push_account_job)


@dramatiq.actor(
    actor_name="billing.catch_up_with_stripe", queue_name="billing", **policy("billing").actor_options()
)
async def catch_up_with_stripe() -> None:
    """Store and process the events Stripe has and the inbox lacks. Idempotent: event ids
    are unique in the inbox, and the cursor moves only after a complete walk."""
    resources = current_resources()
    assert resources.stripe is not None
    async with resources.pool.acquire() as conn:
        stored = await catch_up_events(conn, resources.stripe, RateLimitedStripe(resources.stripe_limiter))
    await send_events(stored)
    log.info("caught up with stripe events", stored=len(stored))
