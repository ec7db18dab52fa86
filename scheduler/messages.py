"""What a fired slot becomes: a message to the job's actor, carrying its (job, slot)."""

from __future__ import annotations

import asyncio
from typing import Any

import dramatiq

from scheduler.loop import Fire, Send
from workers.enqueue import enqueue_many
from workers.scheduled_runs import SLOT_OPTION


def fire_message(broker: dramatiq.Broker, fire: Fire) -> dramatiq.Message[Any]:
    actor = broker.get_actor(fire.job.actor)
    slot = fire.slot.isoformat()
    return actor.message_with_options(
        args=fire.job.args,
        kwargs={"slot": slot} if fire.job.pass_slot else {},
        **{SLOT_OPTION: [fire.job.name, slot]},
    )


def sender(broker: dramatiq.Broker) -> Send:
    """The scheduler's `send`: one batch of messages, off the event loop."""

    async def send(fires: list[Fire]) -> None:
        messages = [fire_message(broker, fire) for fire in fires]
        await asyncio.to_thread(enqueue_many, broker, messages)

    return send
