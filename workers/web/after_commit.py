"""Send messages after a commit, without making the HTTP response wait for the broker.

Rows are committed first; if a message then fails to go out, the row is still there
and its reconciler sends it again. So a broker that is down costs latency for the
work, never the work itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import dramatiq

from workers.enqueue import enqueue_many
from workers.logs import get_logger
from workers.web.state import WebState

log = get_logger(__name__)


def send_after_commit(state: WebState, messages: list[dramatiq.Message[Any]]) -> None:
    task = asyncio.ensure_future(_send(state, messages))
    state.sending.add(task)
    task.add_done_callback(state.sending.discard)


async def _send(state: WebState, messages: list[dramatiq.Message[Any]]) -> None:
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
