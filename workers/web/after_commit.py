"""Send messages after a commit, without making the HTTP response wait for the broker.

Rows are committed first; if a message then fails to go out, the row is still there
and its reconciler sends it again. So a broker that is down costs latency for the
work, never the work itself.

The messages of the requests answered within LINGER go to the broker together: at a
steady trickle of webhooks each commit holds an event or two, and a broker round trip
for each of them was a large share of the web process's CPU (bench/RESULTS.md has the
paced load's figures).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import dramatiq

from workers.batching import Batcher
from workers.enqueue import enqueue_many
from workers.logs import get_logger
from workers.web.state import WebState

log = get_logger(__name__)

Message = dramatiq.Message[Any]
LINGER = 0.005  # seconds a message may wait for others; far below any actor's own latency
MOST = 1000  # messages sent in one go at the most


def outbox(state: WebState) -> Batcher[Message, None]:
    """The web process's batcher of messages to send; `send_after_commit` posts to it."""

    async def send(messages: list[Message]) -> Sequence[None]:
        try:
            if state.enqueuer is not None:
                await state.enqueuer.enqueue_many(messages)
            else:
                await asyncio.get_running_loop().run_in_executor(
                    state.executor, enqueue_many, state.broker, messages
                )
        except Exception as error:
            log.warning(
                "enqueue failed; the reconciler will re-send", count=len(messages), error=type(error).__name__
            )
        return [None] * len(messages)

    return Batcher(send, max_batch=MOST, linger=LINGER)


def send_after_commit(state: WebState, messages: list[Message]) -> None:
    for message in messages:
        state.outbox.post(message)
