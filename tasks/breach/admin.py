"""What the `bindery breach …` commands do, as plain functions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import asyncpg

from tasks.breach import campaigns
from tasks.breach.message import CompiledMessage, Recipient
from tasks.breach.notice import Notice
from workers.db import create_pool
from workers.mail import send_message
from workers.settings import Settings

ACTOR = "cli"
SAMPLE = Recipient(0, "preview@example.invalid", "Jeanne", "Dupont", "Boulangerie Dupont")


@asynccontextmanager
async def _pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


async def create(settings: Settings, notice: Notice) -> int:
    async with _pool(settings) as pool:
        return await campaigns.create(pool, notice, ACTOR)


async def preview(settings: Settings, campaign_id: int, to: str | None) -> str:
    """The message as a sample customer would get it: printed, or sent to `to` (once)."""
    async with _pool(settings) as pool:
        notice = campaigns.notice_of(await campaigns.load(pool, campaign_id))
    recipient = SAMPLE if to is None else replace(SAMPLE, email=to)
    prepared = CompiledMessage(
        campaign_id, notice, sender=settings.mail_from, privacy_contact=settings.privacy_contact
    )
    # Account 0 is nobody: a preview never shares its Message-ID with a customer's copy.
    message = message_from_bytes(prepared.message(recipient), _class=EmailMessage, policy=policy.default)
    if to is not None:
        await send_message(settings, message)
        return f"preview of campaign {campaign_id} sent"
    text = message.get_body(("plain",))
    assert text is not None
    return f"Subject: {message['Subject']}\nMessage-ID: {message['Message-ID']}\n\n{text.get_content()}"


async def start(settings: Settings, campaign_id: int) -> dict[str, Any]:
    from tasks.breach.actors import start_lanes

    async with _pool(settings) as pool:
        recipients = await campaigns.start(pool, campaign_id, ACTOR)
    await asyncio.to_thread(start_lanes, campaign_id, settings.breach_lanes)
    return {"campaign": campaign_id, "recipients": recipients, "lanes": settings.breach_lanes}


async def move(settings: Settings, campaign_id: int, action: str) -> dict[str, Any]:
    async with _pool(settings) as pool:
        await getattr(campaigns, action)(pool, campaign_id, ACTOR)
        if action == "resume":
            from tasks.breach.actors import start_lanes

            await asyncio.to_thread(start_lanes, campaign_id, settings.breach_lanes)
        return await campaigns.status(pool, campaign_id)


async def status(settings: Settings, campaign_id: int) -> dict[str, Any]:
    async with _pool(settings) as pool:
        return await campaigns.status(pool, campaign_id)
